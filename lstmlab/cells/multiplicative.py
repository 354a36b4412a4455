"""`multiplicative`: Krause, Lu, Murray & Renals' multiplicative LSTM (2016, arXiv:1609.07959).

Not xLSTM's matrix-memory `mlstm`: "mLSTM" names both in the
literature. An intermediate state m_t replaces h_{t-1} in every gate and in
the candidate, so each input symbol picks its own recurrent transition:

    m_t          = (x_t W_mxᵀ) ⊙ (h_{t-1} W_mhᵀ)
    [i, f, a, o] = x_t W_hxᵀ + b + m_t W_hmᵀ         gate order i, f, a, o as in `lstm`
    c_t = σ(f) ⊙ c_{t-1} + σ(i) ⊙ tanh(a)
    h_t = σ(o) ⊙ tanh(c_t)

h_{t-1} reaches the gates only through m_t; there is no direct W_hh. Everything
that depends only on the input, x W_mxᵀ and x W_hxᵀ + b, is one matrix product
over the whole window before the time loop; a step then costs h W_mhᵀ, one
elementwise product and m W_hmᵀ. Windows run as one autograd Function with a
hand-written backward where it applies (`lstmlab.kernels.multiplicative`); the
step loop here is its reference and serves sampling's short windows.

Init follows Krause et al.'s best code: orthogonal matrices, forget-gate bias
`forget_bias` (3), other biases 0. With `weight_norm` every matrix is
W = g ⊙ V / ‖V‖ row-wise (one gain per output row), gains starting at the
initial row norms, so the initial function is the same either way.

State dropout draws one mask per window and stream and multiplies h_{t-1} where
it enters m_t. With `state_dropout_on_output` the same mask also multiplies the
output h_t, as in Krause's chainer/train.py, where the dropped h is both what
the softmax reads and the next step's h_{t-1}. His code differs only at a
window's first step: it feeds h dropped with the previous window's mask, here
the new mask meets the undropped carried h.

Shapes: B batch, T window, E input size, H hidden size (= size of m).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lstmlab.cells.base import RecurrentCell, state_dropout_mask
from lstmlab.cells.configs import MultiplicativeConfig
from lstmlab.cells.lstm import lstm_pointwise


class MultiplicativeState(NamedTuple):
    h: Tensor  # (B, H) output
    c: Tensor  # (B, H) cell


class Weights(NamedTuple):
    """The effective matrices of one window (weight norm and DropConnect applied)."""

    mx: Tensor  # (H, E)
    hx: Tensor  # (4H, E)
    mh: Tensor  # (H, H)
    hm: Tensor  # (4H, H)


_MATRICES = ("mx", "hx", "mh", "hm")


def multiplicative_step(
    x_m: Tensor, x_gates: Tensor, state: MultiplicativeState, w_mh: Tensor, w_hm: Tensor
) -> tuple[Tensor, MultiplicativeState]:
    """One step from the hoisted input parts x_m = x W_mxᵀ (B, H) and x_gates = x W_hxᵀ + b (B, 4H)."""
    m = x_m * (state.h @ w_mh.t())  # (B, H)
    gates = torch.addmm(x_gates, m, w_hm.t())  # (B, 4H)
    h, c = lstm_pointwise(gates, state.c)
    return h, MultiplicativeState(h, c)


class MultiplicativeCell(RecurrentCell):
    """Multiplicative LSTM layer; `weight_dropout` is DropConnect on W_mh, the only matrix h_{t-1} meets."""

    window_kernel = "multiplicative"

    def __init__(
        self, config: MultiplicativeConfig, input_dim: int, *, weight_dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.config = config
        self.input_dim = input_dim
        self.hidden_dim = hidden = config.hidden_dim
        self.weight_dropout = weight_dropout
        shapes = {
            "mx": (hidden, input_dim),
            "hx": (4 * hidden, input_dim),
            "mh": (hidden, hidden),
            "hm": (4 * hidden, hidden),
        }
        for name, shape in shapes.items():
            self.register_parameter(f"weight_{name}", nn.Parameter(torch.empty(shape)))
            if config.weight_norm:
                self.register_parameter(f"gain_{name}", nn.Parameter(torch.empty(shape[0])))
        self.bias = nn.Parameter(torch.empty(4 * hidden))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        hidden = self.hidden_dim
        for name in _MATRICES:
            weight = getattr(self, f"weight_{name}")
            nn.init.orthogonal_(weight)
            if self.config.weight_norm:
                with torch.no_grad():
                    getattr(self, f"gain_{name}").copy_(weight.norm(dim=1))
        with torch.no_grad():
            self.bias.zero_()
            self.bias[hidden : 2 * hidden].fill_(self.config.forget_bias)

    def window_weights(self) -> Weights:
        """The matrices for one window: weight-normalised, and W_mh DropConnected while training."""
        mats = {}
        for name in _MATRICES:
            weight = getattr(self, f"weight_{name}")
            if self.config.weight_norm:
                gain = getattr(self, f"gain_{name}")
                weight = weight * (gain / weight.norm(dim=1)).unsqueeze(1)  # (out, in) * (out, 1)
            mats[name] = weight
        if self.weight_dropout:
            mats["mh"] = F.dropout(mats["mh"], self.weight_dropout, self.training)
        return Weights(**mats)

    def input_weights(self, weights: Weights) -> tuple[Tensor, Tensor]:
        """[W_mx; W_hx] (5H, E) and [0; b] (5H,): both input parts in one matrix product."""
        w_in = torch.cat([weights.mx, weights.hx])
        b_in = torch.cat([self.bias.new_zeros(self.hidden_dim), self.bias])
        return w_in, b_in

    def input_parts(self, x: Tensor, weights: Weights) -> tuple[Tensor, Tensor]:
        """x (..., E) -> (x W_mxᵀ (..., H), x W_hxᵀ + b (..., 4H)) in one matrix product."""
        both = F.linear(x, *self.input_weights(weights))  # (..., 5H)
        return both.split([self.hidden_dim, 4 * self.hidden_dim], dim=-1)

    def initial_state(self, batch_size: int, *, device=None, dtype=None) -> MultiplicativeState:
        dtype = dtype or self.bias.dtype
        zeros = torch.zeros(batch_size, self.hidden_dim, device=device, dtype=dtype)
        return MultiplicativeState(zeros, zeros.clone())

    def step(self, x_t: Tensor, state: MultiplicativeState) -> tuple[Tensor, MultiplicativeState]:
        y, state = self.forward(x_t.unsqueeze(1), state)  # (B, 1, E) -> (B, 1, H)
        return y.squeeze(1), state

    def window_constants(self, state: MultiplicativeState) -> tuple[Weights, Tensor | None]:
        """The window's matrices and its state-dropout mask (B, H) or None."""
        weights = self.window_weights()
        return weights, state_dropout_mask(state.h, self.config.state_dropout, self.training)

    def run_window(self, x: Tensor, state: MultiplicativeState, constants):
        y, state = super().run_window(x, state, constants)
        mask = constants[1]
        if mask is not None and self.config.state_dropout_on_output:
            y = y * mask.unsqueeze(1)  # (B, T, H) * (B, 1, H): the recurrence's mask, fixed over t
        return y, state

    def reference_window(self, x: Tensor, state: MultiplicativeState, constants):
        weights, mask = constants
        x_m, x_gates = self.input_parts(x, weights)  # (B, T, H), (B, T, 4H)
        outs = []
        for x_m_t, x_g_t in zip(x_m.unbind(dim=1), x_gates.unbind(dim=1)):
            if mask is not None:
                state = MultiplicativeState(state.h * mask, state.c)
            h, state = multiplicative_step(x_m_t, x_g_t, state, weights.mh, weights.hm)
            outs.append(h)
        return torch.stack(outs, dim=1), state  # (B, T, H)

    def extra_repr(self) -> str:
        return f"input_dim={self.input_dim}, hidden_dim={self.hidden_dim}, weight_norm={self.config.weight_norm}"
