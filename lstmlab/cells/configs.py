"""Typed hyperparameters of every cell, one frozen pydantic model per registry key.

They live apart from the cell modules so the recipe schema can be validated
without building a network. `kind` is the discriminator of the `CellConfig`
union and equals the cell's registry key.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field


class _CellBase(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class LSTMConfig(_CellBase):
    """LSTM with forget gate (torch.nn.LSTM's equations and parameter layout)."""

    kind: Literal["lstm"] = "lstm"
    hidden_dim: int = Field(gt=0)
    # None keeps torch's U(±1/sqrt(d)) init; a number sets the forget gate's total bias.
    forget_bias: float | None = None
    # c_t = f*c + min(i, 1-f)*g, as in every Mogrifier/LAMB model; off keeps torch-exact maths.
    capped_input_gate: bool = False


CellConfig = Annotated[Union[LSTMConfig], Field(discriminator="kind")]  # noqa: UP007

CELL_KINDS: tuple[str, ...] = ("lstm",)
