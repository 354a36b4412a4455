"""Typed hyperparameters of every cell, one frozen pydantic model per registry key.

They live apart from the cell modules so the recipe schema can be validated
without building a network (this module imports no torch). `kind` is the
discriminator of the `CellConfig` union and equals the cell's registry key.
`CELL_CONFIGS` is the one list of cell configs: the union, `CELL_KINDS` and the
registry's keys all derive from it. Every field carries its description as
data (shown by `lstmlab cells`, `train --dry-run` and docs/recipe-reference.md),
and every rule a cell's constructor enforces is stated here (`width_problems`,
`accepts_weight_dropout`) so that `ModelConfig` checks it at load time.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, ClassVar, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, Strict, model_validator

# Integers and floats are strict: YAML's `true` is not 1 and "256" is not 256. A float
# field still takes an int (`lr: 1`). Sizes stay within what torch indexes with int32.
Int = Annotated[int, Strict()]
Float = Annotated[float, Strict()]
MAX_SIZE = 2**31 - 1


def round_up(x: float, multiple: int = 64) -> int:
    """The smallest multiple of `multiple` that is >= x (xLSTM's widths)."""
    return int(math.ceil(x / multiple) * multiple)


class _CellBase(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    # Whether model.dropout.weight (DropConnect on a recurrent matrix) has a matrix to act on.
    accepts_weight_dropout: ClassVar[bool] = True

    def width_problems(self, width: int) -> list[str]:
        """What its constructor would refuse in this cell built `width` wide.

        `ModelConfig` asks for every layer's real width (a tied last layer is embed_dim
        wide, whatever hidden_dim says), so a recipe fails at load, never at build.
        """
        return []


# A bias is stored in float32 (where 1e39 is inf); the sigmoid saturates long before ±100.
_BIAS_RANGE = {"ge": -100.0, "le": 100.0}
_FORGET_BIAS = (
    "Total forget-gate bias (b_ih + b_hh) at init; null keeps torch's U(±1/sqrt(hidden_dim)) init."
)
_HIDDEN = "Hidden and cell state size H; null (or absent) when model.params sizes it."
_WIDTH = "Model width d, the block's residual stream; null (or absent) when model.params sizes it."
_CAPPED = (
    "Couple the input gate to the forget gate, c_t = f*c + min(i, 1-f)*g, as every "
    "Mogrifier/LAMB model does; false keeps torch.nn.LSTM's exact maths."
)


class LSTMConfig(_CellBase):
    """LSTM with forget gate (torch.nn.LSTM's equations and parameter layout)."""

    kind: Literal["lstm"] = Field(default="lstm", description="Cell registry key.")
    hidden_dim: Int | None = Field(default=None, gt=0, le=MAX_SIZE, description=_HIDDEN)
    forget_bias: Float | None = Field(default=None, **_BIAS_RANGE, description=_FORGET_BIAS)
    capped_input_gate: bool = Field(default=False, description=_CAPPED)


class MogrifierConfig(_CellBase):
    """Mogrifier LSTM (Melis et al. 2020): `rounds` of mutual gating of x and h before an `lstm` update."""

    kind: Literal["mogrifier"] = Field(default="mogrifier", description="Cell registry key.")
    hidden_dim: Int | None = Field(default=None, gt=0, le=MAX_SIZE, description=_HIDDEN)
    rounds: Int = Field(
        default=5,
        ge=0,
        le=64,
        description="Rounds of mutual gating of x and h_{t-1} before the LSTM update; 0 is exactly `lstm`.",
    )
    rank: Int | None = Field(
        default=None,
        gt=0,
        le=MAX_SIZE,
        description="Rank of the factorised round matrices Q_j and R_j; null makes them full-rank.",
    )
    state_dropout: Float = Field(
        default=0.0,
        ge=0.0,
        lt=1.0,
        description="Probability of locked dropout on h_{t-1} before the rounds (the official code's state dropout).",
    )
    forget_bias: Float | None = Field(default=None, **_BIAS_RANGE, description=_FORGET_BIAS)
    capped_input_gate: bool = Field(default=False, description=_CAPPED)
    factor_init: Literal["unit_product", "lamb"] = Field(
        default="unit_product",
        description=(
            "Init of the low-rank factors, s = (fan_in * rank)^(-1/4): lamb draws each from "
            "N(0, s^2) cut at +-2s and not rescaled (TF's truncated_normal_initializer in the "
            "official code), so the product's variance is about 0.60/fan_in; unit_product "
            "rescales the same cut normal to std s, so the product's variance is 1/fan_in. "
            "Needs rank and rounds >= 1."
        ),
    )

    @model_validator(mode="after")
    def _factors_to_initialise(self) -> MogrifierConfig:
        if self.factor_init != "unit_product" and (self.rank is None or self.rounds == 0):
            raise ValueError(
                "factor_init applies to the low-rank factors of the rounds: set rank and "
                "rounds >= 1, or drop factor_init"
            )
        return self


class MultiplicativeConfig(_CellBase):
    """Multiplicative LSTM (Krause et al. 2016); not xLSTM's matrix-memory `mlstm`."""

    kind: Literal["multiplicative"] = Field(
        default="multiplicative", description="Cell registry key."
    )
    hidden_dim: Int | None = Field(default=None, gt=0, le=MAX_SIZE, description=_HIDDEN)
    forget_bias: Float = Field(
        default=3.0,
        **_BIAS_RANGE,
        description="Forget-gate bias at init (3.0 as in Krause et al.'s code).",
    )
    weight_norm: bool = Field(
        default=False,
        description="Weight normalisation: one learnt gain per output row of every matrix (+10 H parameters).",
    )
    state_dropout: Float = Field(
        default=0.0,
        ge=0.0,
        lt=1.0,
        description="Probability of locked (variational) dropout on h_{t-1}, one mask per window and stream.",
    )
    state_dropout_on_output: bool = Field(
        default=False,
        description=(
            "Krause et al.'s variant: the state-dropout mask also multiplies the layer's output "
            "h_t, so the softmax (or next layer) reads the dropped h the recurrence reads; "
            "false drops h only where it re-enters the recurrence. Needs state_dropout > 0."
        ),
    )

    @model_validator(mode="after")
    def _mask_to_share(self) -> MultiplicativeConfig:
        if self.state_dropout_on_output and self.state_dropout == 0.0:
            raise ValueError(
                "state_dropout_on_output shares the state-dropout mask: set state_dropout > 0 "
                "or drop state_dropout_on_output"
            )
        return self


class MLSTMConfig(_CellBase):
    """xLSTM's matrix-memory mLSTM block (arXiv:2405.04517); not Krause's multiplicative LSTM."""

    # The block has no recurrent weight matrix: its memory is updated by outer products.
    accepts_weight_dropout: ClassVar[bool] = False

    kind: Literal["mlstm"] = Field(default="mlstm", description="Cell registry key.")
    hidden_dim: Int | None = Field(default=None, gt=0, le=MAX_SIZE, description=_WIDTH)
    num_heads: Int = Field(
        default=4,
        ge=1,
        le=MAX_SIZE,
        description="Memory heads; must divide the inner width round_up(proj_factor * d, 64).",
    )
    proj_factor: Float = Field(
        default=2.0,
        gt=0.0,
        le=64.0,
        description="Up-projection factor: inner width = round_up(proj_factor * d, 64).",
    )
    conv_kernel: Int = Field(
        default=4,
        ge=1,
        le=4096,
        description="Width in steps of the causal convolution before q and k.",
    )
    chunk_size: Int | None = Field(
        default=None,
        ge=1,
        le=MAX_SIZE,
        description=(
            "Steps per chunk of the chunkwise form used on windows; null picks max(64, head_dim // 2) "
            "(state updates cost ∝ head_dim², intra-chunk scores ∝ chunk length)."
        ),
    )
    dropout: Float = Field(
        default=0.0, ge=0.0, lt=1.0, description="Dropout probability on the block's output."
    )

    def inner_width(self, width: int) -> int:
        return round_up(self.proj_factor * width)

    def width_problems(self, width: int) -> list[str]:
        inner = self.inner_width(width)  # a multiple of 64, so of the q/k/v block size 4 too
        if inner % self.num_heads:
            return [
                f"num_heads {self.num_heads} does not divide the mlstm inner width {inner} "
                f"= round_up({self.proj_factor:g} * {width}, 64); pick a divisor, e.g. 4"
            ]
        return []


class SLSTMConfig(_CellBase):
    """xLSTM's scalar-memory sLSTM block with its gated MLP (arXiv:2405.04517)."""

    kind: Literal["slstm"] = Field(default="slstm", description="Cell registry key.")
    hidden_dim: Int | None = Field(default=None, gt=0, le=MAX_SIZE, description=_WIDTH)
    num_heads: Int = Field(
        default=4,
        ge=1,
        le=MAX_SIZE,
        description="Heads of the block-diagonal recurrence; must divide hidden_dim.",
    )
    forget_gate: Literal["sigmoid", "exponential"] = Field(
        default="sigmoid",
        description="Forget-gate activation: sigmoid, or exponential (log-space stabilised).",
    )
    conv_kernel: Int = Field(
        default=4,
        ge=1,
        le=4096,
        description="Width in steps of the causal convolution before the i and f gates.",
    )
    ffn_factor: Float = Field(
        default=1.3,
        gt=0.0,
        le=64.0,
        description="Gated-MLP width factor: MLP width = round_up(ffn_factor * d, 64).",
    )
    dropout: Float = Field(
        default=0.0,
        ge=0.0,
        lt=1.0,
        description="Dropout probability on the cell's output and on the MLP's output.",
    )

    def width_problems(self, width: int) -> list[str]:
        if width % self.num_heads:
            return [
                f"num_heads {self.num_heads} does not divide the slstm width {width}; "
                "pick a divisor, e.g. 4"
            ]
        return []


# The one list of cells' configs, in registry order: a new cell adds its config here and
# one line to `lstmlab.cells.CELLS` (a test checks that both agree with recipes/).
CELL_CONFIGS: tuple[type[_CellBase], ...] = (
    LSTMConfig,
    MogrifierConfig,
    MultiplicativeConfig,
    MLSTMConfig,
    SLSTMConfig,
)

CELL_KINDS: tuple[str, ...] = tuple(c.model_fields["kind"].default for c in CELL_CONFIGS)

CellConfig = Annotated[
    Union[CELL_CONFIGS],  # type: ignore[valid-type]  # noqa: UP007
    Field(discriminator="kind"),
]


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
