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


class MogrifierConfig(_CellBase):
    """Mogrifier LSTM (Melis et al. 2020): `rounds` of mutual gating of x and h before an `lstm` update."""

    kind: Literal["mogrifier"] = "mogrifier"
    hidden_dim: int = Field(gt=0)
    rounds: int = Field(default=5, ge=0)  # 0 is exactly `lstm`
    rank: int | None = Field(default=None, gt=0)  # None: full-rank Q_j and R_j
    # Locked dropout on h_{t-1} before the rounds (the official code's "state dropout").
    state_dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    forget_bias: float | None = None  # as in LSTMConfig
    capped_input_gate: bool = False  # as in LSTMConfig


class MultiplicativeConfig(_CellBase):
    """Multiplicative LSTM (Krause et al. 2016); not xLSTM's matrix-memory `mlstm`."""

    kind: Literal["multiplicative"] = "multiplicative"
    hidden_dim: int = Field(gt=0)
    forget_bias: float = 3.0  # Krause et al.'s code
    weight_norm: bool = False  # one gain per output row of every matrix (+10 H parameters)
    # Locked (variational) dropout on h_{t-1}, one mask per window and stream (Krause et al.).
    state_dropout: float = Field(default=0.0, ge=0.0, lt=1.0)


CellConfig = Annotated[
    Union[LSTMConfig, MogrifierConfig, MultiplicativeConfig],  # noqa: UP007
    Field(discriminator="kind"),
]

CELL_KINDS: tuple[str, ...] = ("lstm", "mogrifier", "multiplicative")
