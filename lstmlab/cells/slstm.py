"""`slstm`: xLSTM's scalar-memory LSTM inside its post-up-projection residual block.

Beck et al. 2024, "xLSTM: Extended Long Short-Term Memory", arXiv:2405.04517.

The cell, per unit, with head-wise block-diagonal input maps W and recurrent maps R
(NH heads of hd = d / NH units, no mixing across heads):

    [ĩ, f̃, z̃, õ] = W x_t + R h_{t−1} + b
    exponential input gate, sigmoid (or exponential) forget gate, normaliser n and
    stabiliser m: the pure update `gating.slstm_pointwise`

The block, with d the model width and F = round_up(1.3 d, 64):

    y   = LN(x);  y_c = SiLU(causal depthwise conv_K(y))        K = 4
    ĩ, f̃ from y_c;  z̃, õ from y
    x   = x + HeadwiseNorm(Dropout(sLSTM(...)))
    y2  = LN(x)
    x   = x + Dropout((GELU(y2 W_gateᵀ) ⊙ (y2 W_upᵀ)) W_downᵀ)      gated MLP

W x is computed for the whole window in one product; each step is then one batched
per-head product R h and the pointwise update (`slstm_step`). When gradients are
needed the window's recurrence runs as one autograd Function with a hand-written
backward (`lstmlab.kernels.slstm`); the step loop stays the reference. State: (h, c, n, m)
of the cell and the conv buffer (the last K − 1 inputs y).

Init: W and W_up small N(0, 2/(5d)); R = 0; b_i = b_z = b_o = 0; forget bias
"power law, block-dependent" (`powerlaw_forget_bias`); W_down Wang.

Shapes: B batch, T window, d model width, NH heads, hd head size, F MLP width, K kernel.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lstmlab.cells.configs import SLSTMConfig
from lstmlab.cells.gating import slstm_pointwise
from lstmlab.cells.xlstm import (
    CausalConv,
    HeadwiseNorm,
    LayerNorm,
    ResidualBlock,
    check_heads,
    round_up,
    small_init_,
    wang_init_,
)

GATES = 4  # order i, f, z, o


class SLSTMState(NamedTuple):
    h: Tensor  # (B, d) output
    c: Tensor  # (B, d) cell
    n: Tensor  # (B, d) normaliser
    m: Tensor  # (B, d) log-space stabiliser
    conv: Tensor  # (B, K − 1, d) last inputs of the causal convolution


def powerlaw_forget_bias(head_dim: int, block_index: int = 0, num_blocks: int = 1) -> Tensor:
    """Forget bias of unit j in each head: −(−5 + 12 (j / (hd − 1))^(0.3 + 1.3 ρ)),
    ρ = block_index / (num_blocks − 1); from +5 (long memory) down to −7 (short)."""
    rho = block_index / (num_blocks - 1) if num_blocks > 1 else 0.0
    ratio = torch.linspace(0.0, 1.0, head_dim)
    return -(-5.0 + 12.0 * ratio ** (0.3 + 1.3 * rho))


def slstm_step(
    wx_t: Tensor, h: Tensor, c: Tensor, n: Tensor, m: Tensor, recurrent: Tensor, forget_gate: str
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """One step of the cell: wx_t (B, 4, NH, hd) with the bias, state (B, d) each,
    recurrent (NH, hd, 4hd) -> (h', c', n', m')."""
    B = h.shape[0]
    NH, hd = recurrent.shape[:2]
    rh = torch.bmm(h.view(B, NH, hd).transpose(0, 1), recurrent)  # (NH, B, hd) @ (NH, hd, 4hd)
    rh = rh.view(NH, B, GATES, hd).permute(1, 2, 0, 3)  # (NH, B, 4hd) -> (B, 4, NH, hd)
    pre = (wx_t + rh).flatten(2)  # (B, 4, NH, hd) -> (B, 4, d)
    return slstm_pointwise(*pre.unbind(1), c, n, m, forget_gate=forget_gate)


class SLSTMCell(ResidualBlock):
    """xLSTM sLSTM residual block with gated MLP; `hidden_dim` is the model width d.

    `weight_dropout` is DropConnect on the recurrent maps R, one mask per window.
    """

    window_kernel = "slstm"

    def __init__(self, config: SLSTMConfig, input_dim: int, *, weight_dropout: float = 0.0) -> None:
        super().__init__(input_dim, config.hidden_dim)
        self.config = config
        d = config.hidden_dim
        self.num_heads = NH = config.num_heads
        self.head_dim = hd = check_heads("slstm", d, NH, "hidden_dim")
        self.weight_dropout = weight_dropout
        self.norm = LayerNorm(d)
        self.conv = CausalConv(d, config.conv_kernel)
        # Head-wise maps: input_weight[g, h] maps head h's hd inputs to gate g's hd units.
        self.input_weight = nn.Parameter(torch.empty(GATES, NH, hd, hd))
        self.recurrent_weight = nn.Parameter(torch.empty(NH, hd, GATES * hd))
        self.bias = nn.Parameter(torch.empty(GATES, NH, hd))
        self.cell_norm = HeadwiseNorm(NH, hd)
        self.ffn_norm = LayerNorm(d)
        self.ffn_dim = round_up(config.ffn_factor * d)
        self.ffn_up = nn.Linear(d, 2 * self.ffn_dim, bias=False)  # gate and value halves
        self.ffn_down = nn.Linear(self.ffn_dim, d, bias=False)
        self.dropout = nn.Dropout(config.dropout)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        d = self.hidden_dim
        small_init_(self.input_weight, d)
        small_init_(self.ffn_up.weight, d)
        if self.in_proj is not None:
            small_init_(self.in_proj.weight, d)
        nn.init.zeros_(self.recurrent_weight)
        self.init_for_stack(0, 1)

    def init_for_stack(self, index: int, num_blocks: int) -> None:
        with torch.no_grad():
            self.bias.zero_()
            self.bias[1].copy_(powerlaw_forget_bias(self.head_dim, index, num_blocks))
        wang_init_(self.ffn_down.weight, self.hidden_dim, num_blocks)

    def initial_state(self, batch_size: int, *, device=None, dtype=None) -> SLSTMState:
        dtype = dtype or self.bias.dtype
        zeros = torch.zeros(batch_size, self.hidden_dim, device=device, dtype=dtype)
        conv = torch.zeros(
            batch_size, self.conv.kernel - 1, self.hidden_dim, device=device, dtype=dtype
        )
        return SLSTMState(zeros, zeros.clone(), zeros.clone(), zeros.clone(), conv)

    def forward(self, x: Tensor, state: SLSTMState) -> tuple[Tensor, SLSTMState]:
        """x (B, T, E) -> (B, T, d)."""
        x = self.lift(x)  # (B, T, d)
        NH, hd = self.num_heads, self.head_dim
        y = self.norm(x)
        y_conv, conv_buffer = self.conv(y, state.conv)
        y_conv = F.silu(y_conv)
        # Input side for the whole window: i, f read the convolved y, z, o the plain y.
        w = self.input_weight
        wx_if = torch.einsum(
            "btni,gnoi->btgno", y_conv.unflatten(-1, (NH, hd)), w[:2]
        )  # (B, T, 2, NH, hd)
        wx_zo = torch.einsum(
            "btni,gnoi->btgno", y.unflatten(-1, (NH, hd)), w[2:]
        )  # (B, T, 2, NH, hd)
        wx = torch.cat([wx_if, wx_zo], dim=2) + self.bias  # (B, T, 4, NH, hd)
        recurrent = (
            F.dropout(self.recurrent_weight, self.weight_dropout, self.training)
            if self.weight_dropout
            else self.recurrent_weight
        )
        cell_out, (h, c, n, m) = self.run_window(wx, state, recurrent)  # the recurrence
        x = x + self.cell_norm(self.dropout(cell_out))
        gate, value = self.ffn_up(self.ffn_norm(x)).chunk(2, dim=-1)  # (B, T, F) each
        x = x + self.dropout(self.ffn_down(F.gelu(gate) * value))
        return x, SLSTMState(h, c, n, m, conv_buffer)

    def reference_window(self, wx: Tensor, state: SLSTMState, recurrent: Tensor):
        """The reference recurrence, step by step: wx (B, T, 4, NH, hd) -> (B, T, d), (h, c, n, m)."""
        h, c, n, m, _ = state
        outs = []
        # unbind, not wx[:, t]: each indexing op's backward would write a window-sized zero tensor
        for wx_t in wx.unbind(1):  # (B, 4, NH, hd) per step
            h, c, n, m = slstm_step(wx_t, h, c, n, m, recurrent, self.config.forget_gate)
            outs.append(h)
        return torch.stack(outs, dim=1), (h, c, n, m)  # (B, T, d)

    def extra_repr(self) -> str:
        return f"d={self.hidden_dim}, heads={self.num_heads}, ffn={self.ffn_dim}, forget_gate={self.config.forget_gate}"
