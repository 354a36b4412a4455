"""Typed hyperparameters of every cell, one frozen pydantic model per registry key.

They live apart from the cell modules so the recipe schema can be validated
without building a network. `kind` is the discriminator of the `CellConfig`
union and equals the cell's registry key.
"""

from __future__ import annotations

import re
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


class MLSTMConfig(_CellBase):
    """xLSTM's matrix-memory mLSTM block (arXiv:2405.04517); not Krause's multiplicative LSTM."""

    kind: Literal["mlstm"] = "mlstm"
    hidden_dim: int = Field(gt=0)  # model width d: the block's residual stream
    num_heads: int = Field(default=4, ge=1)  # must divide the inner width round_up(2d, 64)
    proj_factor: float = Field(default=2.0, gt=0.0)  # inner width = round_up(proj_factor * d, 64)
    conv_kernel: int = Field(default=4, ge=1)
    # Chunk length of the chunkwise form for windows. None: max(64, head_dim // 2), measured on
    # CPU: per-chunk state updates cost ∝ head_dim², intra-chunk scores ∝ chunk length.
    chunk_size: int | None = Field(default=None, ge=1)
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)  # on the block's output


class SLSTMConfig(_CellBase):
    """xLSTM's scalar-memory sLSTM block with its gated MLP (arXiv:2405.04517)."""

    kind: Literal["slstm"] = "slstm"
    hidden_dim: int = Field(gt=0)  # model width d: the block's residual stream
    num_heads: int = Field(default=4, ge=1)  # must divide hidden_dim
    forget_gate: Literal["sigmoid", "exponential"] = "sigmoid"
    conv_kernel: int = Field(default=4, ge=1)
    ffn_factor: float = Field(default=1.3, gt=0.0)  # gated-MLP width = round_up(ffn_factor * d, 64)
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)  # on the cell output and the MLP output


CellConfig = Annotated[
    Union[LSTMConfig, MogrifierConfig, MultiplicativeConfig, SLSTMConfig, MLSTMConfig],  # noqa: UP007
    Field(discriminator="kind"),
]

CELL_KINDS: tuple[str, ...] = ("lstm", "mogrifier", "multiplicative", "slstm", "mlstm")


def slstm_positions(slstm_at: tuple[int, ...] | str, num_layers: int) -> tuple[int, ...]:
    """0-based sLSTM block positions from a list or the paper's "xLSTM[a:b]" notation.

    "xLSTM[a:b]": a mLSTM blocks for every b sLSTM blocks; in each group of a + b
    consecutive blocks the b sLSTM blocks follow the group's first mLSTM block
    (so xLSTM[7:1] over 8 blocks is [1]). Raises ValueError on a bad value.
    """
    if isinstance(slstm_at, str):
        match = re.fullmatch(r"\s*xLSTM\[(\d+):(\d+)\]\s*", slstm_at)
        if not match:
            raise ValueError(f"{slstm_at!r} is not a list of positions or 'xLSTM[a:b]'")
        a, b = int(match[1]), int(match[2])
        if a + b == 0 or num_layers % (a + b):
            raise ValueError(f"{slstm_at} needs num_layers to be a multiple of {a + b}")
        first = 1 if a else 0  # leading mLSTM block of each group
        return tuple(g + first + j for g in range(0, num_layers, a + b) for j in range(b))
    bad = [p for p in slstm_at if not 0 <= p < num_layers]
    if bad or len(set(slstm_at)) != len(slstm_at):
        raise ValueError(
            f"positions must be distinct and in [0, {num_layers}), got {list(slstm_at)}"
        )
    return tuple(sorted(slstm_at))
