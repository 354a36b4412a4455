"""`lstm`: the LSTM with forget gate (Hochreiter & Schmidhuber 1997; Gers et al. 2000).

    [i, f, g, o] = x W_ihᵀ + b_ih + h W_hhᵀ + b_hh      gate order i, f, g, o
    c' = σ(f) c + σ(i) tanh(g)        (capped: min(σ(i), 1 − σ(f)) instead of σ(i))
    h' = σ(o) tanh(c')

Parameters keep torch.nn.LSTM's layout (`weight_ih` (4H, E), `weight_hh` (4H, H),
`bias_ih`, `bias_hh`), so weights move between the two. A window runs through
torch's fused LSTM kernel where it applies (`lstmlab.kernels.lstm`); the step
loop here is its reference. `lstm_pointwise` is the cell update as a pure
function, shared with the Mogrifier LSTM.

Shapes: B batch, T window, E input size, H hidden size.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lstmlab.cells.base import RecurrentCell
from lstmlab.cells.configs import LSTMConfig


class LSTMState(NamedTuple):
    h: Tensor  # (B, H) output
    c: Tensor  # (B, H) cell


def lstm_pointwise(
    gates: Tensor, c: Tensor, *, capped_input_gate: bool = False
) -> tuple[Tensor, Tensor]:
    """(gates (B, 4H) in order i, f, g, o; c (B, H)) -> (h', c')."""
    i, f, g, o = gates.chunk(4, dim=-1)
    i, f, o = torch.sigmoid(i), torch.sigmoid(f), torch.sigmoid(o)
    if capped_input_gate:
        # Never write more than the forget gate frees: keeps |c| bounded (Mogrifier/LAMB code).
        i = torch.minimum(i, 1.0 - f)
    c = f * c + i * torch.tanh(g)
    return o * torch.tanh(c), c


def set_forget_bias(bias_ih: Tensor, bias_hh: Tensor, value: float) -> None:
    """Make the forget gate's total bias (b_ih + b_hh) equal `value` (e.g. 1.0 or 3.0)."""
    hidden = bias_ih.shape[0] // 4
    with torch.no_grad():
        bias_ih[hidden : 2 * hidden].fill_(value)
        bias_hh[hidden : 2 * hidden].zero_()


class LSTMCell(RecurrentCell):
    """LSTM layer with torch.nn.LSTM's parameters; `weight_dropout` is DropConnect on W_hh (AWD-LSTM)."""

    window_kernel = "lstm"

    def __init__(self, config: LSTMConfig, input_dim: int, *, weight_dropout: float = 0.0) -> None:
        super().__init__()
        self.config = config
        self.input_dim = input_dim
        self.hidden_dim = hidden = config.hidden_dim
        self.weight_dropout = weight_dropout
        self.weight_ih = nn.Parameter(torch.empty(4 * hidden, input_dim))
        self.weight_hh = nn.Parameter(torch.empty(4 * hidden, hidden))
        self.bias_ih = nn.Parameter(torch.empty(4 * hidden))
        self.bias_hh = nn.Parameter(torch.empty(4 * hidden))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.hidden_dim)  # torch.nn.LSTM's init
        for p in (self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh):
            nn.init.uniform_(p, -bound, bound)
        if self.config.forget_bias is not None:
            set_forget_bias(self.bias_ih, self.bias_hh, self.config.forget_bias)

    def initial_state(self, batch_size: int, *, device=None, dtype=None) -> LSTMState:
        dtype = dtype or self.weight_ih.dtype
        zeros = torch.zeros(batch_size, self.hidden_dim, device=device, dtype=dtype)
        return LSTMState(zeros, zeros.clone())

    def recurrent_weight(self) -> Tensor:
        """W_hh, with DropConnect applied once per window while training."""
        return (
            F.dropout(self.weight_hh, self.weight_dropout, self.training)
            if self.weight_dropout
            else self.weight_hh
        )

    def step(self, x_t: Tensor, state: LSTMState) -> tuple[Tensor, LSTMState]:
        return self._step(x_t, state, self.recurrent_weight())

    def _step(self, x_t: Tensor, state: LSTMState, weight_hh: Tensor) -> tuple[Tensor, LSTMState]:
        if not self.config.capped_input_gate:
            h, c = torch.lstm_cell(
                x_t, (state.h, state.c), self.weight_ih, weight_hh, self.bias_ih, self.bias_hh
            )
            return h, LSTMState(h, c)
        gates = F.linear(x_t, self.weight_ih, self.bias_ih) + F.linear(
            state.h, weight_hh, self.bias_hh
        )
        h, c = lstm_pointwise(gates, state.c, capped_input_gate=True)
        return h, LSTMState(h, c)

    def window_constants(self, state: LSTMState) -> Tensor:
        return self.recurrent_weight()  # one DropConnect mask for the whole window

    def reference_window(self, x: Tensor, state: LSTMState, weight_hh: Tensor):
        outs = []
        for x_t in x.unbind(dim=1):  # x: (B, T, E)
            h, state = self._step(x_t, state, weight_hh)
            outs.append(h)
        return torch.stack(outs, dim=1), state  # (B, T, H)

    def extra_repr(self) -> str:
        return f"input_dim={self.input_dim}, hidden_dim={self.hidden_dim}, capped_input_gate={self.config.capped_input_gate}"
