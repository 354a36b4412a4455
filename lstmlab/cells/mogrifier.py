"""`mogrifier`: the Mogrifier LSTM (Melis, Kočiský & Blunsom, ICLR 2020, arXiv:1909.01792).

Before each LSTM update the input x = x_t and the previous output h = h_{t-1}
rescale each other for r rounds, j = 1..r:

    j odd:   x ← 2 σ(h Q_jᵀ + q_j) ⊙ x        Q_j (E, H): x is gated by h
    j even:  h ← 2 σ(x R_jᵀ + r_j) ⊙ h        R_j (H, E): h is gated by x

and the ordinary `lstm` update then runs on the final x and h with the
unchanged c_{t-1}; its output h_t is the cell output. With `rank` k every Q_j
and R_j is the product of an (out, k) and a (k, in) factor; without it they are
full matrices. The biases q_j, r_j follow the official code (the paper's
equations omit them). r = 0 is exactly `lstm`: the same parameters under the
same names and the same outputs.

The LSTM part is `LSTMCell` itself (this class subclasses it), so its fused
step, capped input gate, forget-bias init and DropConnect all carry over. A
window runs as one autograd Function where it applies (`lstmlab.kernels.mogrifier`);
the step loop here is its reference.
Round 1 already depends on h_{t-1}, so nothing input-side can be hoisted out of
the time loop. A factored round is applied factor by factor, (B, in) @ (in, k)
then (B, k) @ (k, out), never as the formed (out, in) product: k (in + out)
instead of in·out multiply-adds per row.

Shapes: B batch, T window, E input size, H hidden size, k rank.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor, nn

from lstmlab.cells.base import state_dropout_mask
from lstmlab.cells.configs import MogrifierConfig
from lstmlab.cells.lstm import LSTMCell, LSTMState

RoundWeight = Tensor | tuple[Tensor, Tensor]  # Q_j or R_j as (out, in), or its factors


class MogrifierWindow(NamedTuple):
    """What every step of one window shares."""

    weights: list[RoundWeight]  # `round_factors`
    biases: list[Tensor]
    weight_hh: Tensor  # DropConnected once per window
    mask: Tensor | None  # state dropout on h_{t-1}, (B, H)


def round_preactivation(inp: Tensor, weight: RoundWeight, bias: Tensor) -> Tensor:
    """inp Wᵀ + b for one round; a factored W = left @ right is applied factor by factor.

    Two thin products (B, in) @ (in, k) then (B, k) @ (k, out) cost k (in + out)
    multiply-adds per row instead of in·out.
    """
    if isinstance(weight, Tensor):
        return torch.addmm(bias, inp, weight.t())  # (B, out)
    left, right = weight
    return torch.addmm(bias, inp @ right.t(), left.t())  # (B, k) -> (B, out)


def mogrify(
    x: Tensor, h: Tensor, weights: Sequence[RoundWeight], biases: Sequence[Tensor]
) -> tuple[Tensor, Tensor]:
    """The r rounds as a pure function: x (B, E), h (B, H); weights[j] is Q or R as (out, in)
    or as its (left (out, k), right (k, in)) factors."""
    for j, (weight, bias) in enumerate(zip(weights, biases)):
        if j % 2 == 0:  # rounds 1, 3, ...: x is rescaled by a function of h
            x = 2.0 * torch.sigmoid(round_preactivation(h, weight, bias)) * x
        else:  # rounds 2, 4, ...: h is rescaled by a function of x
            h = 2.0 * torch.sigmoid(round_preactivation(x, weight, bias)) * h
    return x, h


def round_shapes(rounds: int, input_dim: int, hidden_dim: int) -> list[tuple[int, int]]:
    """(out, in) of Q_1, R_2, Q_3, ...: odd rounds map h to x's size, even rounds x to h's."""
    return [
        (input_dim, hidden_dim) if j % 2 == 0 else (hidden_dim, input_dim) for j in range(rounds)
    ]


# Cutting a unit normal at ±2 leaves a standard deviation of 0.8796.
TRUNCATED_STD = 0.87962566103423978


def trunc_normal_cut(tensor: Tensor, scale: float) -> None:
    """N(0, scale²) with values beyond ±2 scale redrawn (TF's truncated_normal_initializer):
    the result's std is TRUNCATED_STD × scale."""
    nn.init.trunc_normal_(tensor, std=scale, a=-2 * scale, b=2 * scale)


def _trunc_normal_with_std(tensor: Tensor, std: float) -> None:
    """The same cut normal, rescaled so the result's std is `std`."""
    trunc_normal_cut(tensor, std / TRUNCATED_STD)


class MogrifierCell(LSTMCell):
    """Mogrifier LSTM layer: `LSTMCell` parameters plus `mog_*` round parameters (none when r = 0)."""

    window_kernel = "mogrifier"

    def __init__(
        self, config: MogrifierConfig, input_dim: int, *, weight_dropout: float = 0.0
    ) -> None:
        super().__init__(config, input_dim, weight_dropout=weight_dropout)
        shapes = round_shapes(config.rounds, input_dim, config.hidden_dim)
        k = config.rank
        if k is None:
            self.mog_weight = nn.ParameterList(
                nn.Parameter(torch.empty(out, inp)) for out, inp in shapes
            )
        else:
            self.mog_left = nn.ParameterList(nn.Parameter(torch.empty(out, k)) for out, _ in shapes)
            self.mog_right = nn.ParameterList(
                nn.Parameter(torch.empty(k, inp)) for _, inp in shapes
            )
        self.mog_bias = nn.ParameterList(nn.Parameter(torch.zeros(out)) for out, _ in shapes)
        self.reset_rounds()

    def reset_rounds(self) -> None:
        """Each factor a normal cut at ±2 of s = (fan_in·k)^(-1/4), biases 0.

        `factor_init: lamb` draws exactly as the official code (lamb's
        `low_rank_factorization`: TF's truncated_normal_initializer(stddev=s), whose cut
        leaves a std of 0.88 s, so the product's variance is 0.88⁴/fan_in ≈ 0.60/fan_in);
        `unit_product` rescales each factor to std s, giving the 1/fan_in the code's comment
        aims at. A full-rank round is a plain matrix of std 1/√fan_in.
        """
        k = self.config.rank
        for j, (_, fan_in) in enumerate(
            round_shapes(self.config.rounds, self.input_dim, self.hidden_dim)
        ):
            if k is None:
                _trunc_normal_with_std(self.mog_weight[j], 1.0 / math.sqrt(fan_in))
            else:
                s = (1.0 / (fan_in * k)) ** 0.25
                for factor in (self.mog_left[j], self.mog_right[j]):
                    if self.config.factor_init == "lamb":
                        trunc_normal_cut(factor, s)
                    else:
                        _trunc_normal_with_std(factor, s)
            nn.init.zeros_(self.mog_bias[j])

    def round_weights(self) -> list[Tensor]:
        """Q_1, R_2, ... as full (out, in) matrices (for inspection; the steps use `round_factors`)."""
        if self.config.rank is None:
            return list(self.mog_weight)
        return [left @ right for left, right in zip(self.mog_left, self.mog_right)]  # (out, in)

    def round_factors(self) -> list[RoundWeight]:
        """What `mogrify` multiplies by: full matrices, or (left, right) pairs never multiplied out."""
        if self.config.rank is None:
            return list(self.mog_weight)
        return list(zip(self.mog_left, self.mog_right))

    def step(self, x_t: Tensor, state: LSTMState) -> tuple[Tensor, LSTMState]:
        mask = state_dropout_mask(state.h, self.config.state_dropout, self.training)
        return self._mogrifier_step(
            x_t, state, self.round_factors(), list(self.mog_bias), self.recurrent_weight(), mask
        )

    def _mogrifier_step(
        self,
        x_t: Tensor,
        state: LSTMState,
        weights: list[RoundWeight],
        biases: list[Tensor],
        weight_hh: Tensor,
        mask: Tensor | None,
    ) -> tuple[Tensor, LSTMState]:
        h = state.h if mask is None else state.h * mask
        x, h = mogrify(x_t, h, weights, biases)
        # Only the copy of h_{t-1} that enters the gates is modulated; c passes unchanged.
        return self._step(x, LSTMState(h, state.c), weight_hh)

    def window_constants(self, state: LSTMState) -> MogrifierWindow:
        return MogrifierWindow(
            self.round_factors(),
            list(self.mog_bias),
            self.recurrent_weight(),  # one DropConnect mask for the whole window
            state_dropout_mask(state.h, self.config.state_dropout, self.training),
        )

    def reference_window(self, x: Tensor, state: LSTMState, window: MogrifierWindow):
        outs = []
        for x_t in x.unbind(dim=1):  # x: (B, T, E)
            h, state = self._mogrifier_step(x_t, state, *window)
            outs.append(h)
        return torch.stack(outs, dim=1), state  # (B, T, H)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, rounds={self.config.rounds}, rank={self.config.rank}"
