"""`mlstm`: xLSTM's matrix-memory LSTM inside its pre-up-projection residual block.

Beck et al. 2024, "xLSTM: Extended Long Short-Term Memory", arXiv:2405.04517.
This is NOT Krause et al.'s multiplicative LSTM (arXiv:1609.07959), which lstmlab
calls `multiplicative`; both are "mLSTM" in the literature.

The block, with d the model width, D = round_up(2 d, 64) and NH heads of DH = D / NH:

    u, z  = split(LN(x) W_upᵀ)                      up-projection to 2D, no bias
    u_c   = SiLU(causal depthwise conv_K(u))        K = 4, with bias
    q, k  = block-diagonal 4×4 maps of u_c;  v = the same of u (no bias)
    ĩ, f̃  = one scalar per head from concat(q, k, v) (with bias)
    h̃     = HeadwiseNorm(mLSTM(q, k, v, ĩ, f̃))     matrix memory, see gating.py
    out   = x + Dropout(((h̃ + s ⊙ u_c) ⊙ SiLU(z)) W_downᵀ)      s: learnable skip, init 1

The memory runs the chunkwise form over a training window and the recurrent form
for a single step (sampling). `reference_window` below is the block as written
here; `lstmlab.kernels.mlstm` runs the same maths with the gates folded through
the q, k, v blocks and fused projections, and is what `forward` uses. State: the matrix memory (C, n, m), kept in float32
or wider, and the conv buffer (the last K − 1 inputs u).

Init: W_up, q/k/v small N(0, 2/(5d)); gate weights 0, forget bias linspace(3, 6)
over heads, input bias N(0, 0.1²); W_down Wang N(0, (2/(num_blocks √d))²).

Shapes: B batch, T window, d model width, D inner width, NH heads, DH head dim, K kernel.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lstmlab.cells.configs import MLSTMConfig
from lstmlab.cells.gating import compute_dtype, mlstm_chunkwise, mlstm_recurrent
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
from lstmlab.errors import ConfigError

QKV_BLOCK = 4  # size of the diagonal blocks of the q, k, v maps


class MLSTMState(NamedTuple):
    C: Tensor  # (B, NH, DH, DH) stabilised matrix memory (k vᵀ)
    n: Tensor  # (B, NH, DH) stabilised normaliser
    m: Tensor  # (B, NH) log-space stabiliser
    conv: Tensor  # (B, K − 1, D) last inputs of the causal convolution


def forget_bias_linspace(num_heads: int, low: float = 3.0, high: float = 6.0) -> Tensor:
    """The mLSTM forget-gate bias init: evenly spaced over heads (long memories from the start)."""
    return torch.linspace(low, high, num_heads)


class BlockDiagonal(nn.Module):
    """Bias-free linear map made of independent `block` × `block` maps: (…, D) -> (…, D)."""

    def __init__(self, dim: int, block: int) -> None:
        super().__init__()
        self.block = block
        self.weight = nn.Parameter(torch.empty(dim // block, block, block))

    def forward(self, x: Tensor) -> Tensor:
        return block_diagonal(x, self.weight)


def block_diagonal(x: Tensor, weight: Tensor) -> Tensor:
    """x (…, G·i) through G independent (o × i) blocks `weight` (G, o, i) -> (…, G·o).

    One batched matrix product over the G blocks; several maps of the same input
    run in one pass by concatenating their blocks along o.
    """
    G, o, i = weight.shape
    lead = x.shape[:-1]
    xb = x.reshape(-1, G, i).transpose(0, 1)  # (N, G·i) -> (G, N, i)
    y = torch.bmm(xb, weight.transpose(1, 2))  # (G, N, o)
    return y.transpose(0, 1).reshape(*lead, G * o)  # (…, G·o)


class MLSTMCell(ResidualBlock):
    """xLSTM mLSTM residual block (matrix memory); `hidden_dim` is the model width d."""

    window_kernel = "mlstm"

    def __init__(self, config: MLSTMConfig, input_dim: int, *, weight_dropout: float = 0.0) -> None:
        super().__init__(input_dim, config.hidden_dim)
        if weight_dropout:
            raise ConfigError(
                "mlstm has no recurrent weight matrix for model.dropout.weight (DropConnect) to act on",
                hint="set model.dropout.weight: 0 and use model.cell.dropout",
            )
        self.config = config
        d = config.hidden_dim
        self.inner_dim = D = round_up(config.proj_factor * d)
        if D % QKV_BLOCK:
            raise ConfigError(f"mlstm: inner width {D} is not a multiple of {QKV_BLOCK}")
        self.num_heads = config.num_heads
        self.head_dim = check_heads("mlstm", D, config.num_heads, "inner width round_up(2d, 64)")
        self.chunk_size = config.chunk_size or max(64, self.head_dim // 2)
        self.norm = LayerNorm(d)
        self.up = nn.Linear(d, 2 * D, bias=False)
        self.conv = CausalConv(D, config.conv_kernel)
        self.q = BlockDiagonal(D, QKV_BLOCK)
        self.k = BlockDiagonal(D, QKV_BLOCK)
        self.v = BlockDiagonal(D, QKV_BLOCK)
        self.igate = nn.Linear(3 * D, config.num_heads)
        self.fgate = nn.Linear(3 * D, config.num_heads)
        self.head_norm = HeadwiseNorm(config.num_heads, self.head_dim)
        self.skip = nn.Parameter(torch.ones(D))
        self.down = nn.Linear(D, d, bias=False)
        self.dropout = nn.Dropout(config.dropout)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        d = self.hidden_dim
        for w in (self.up.weight, self.q.weight, self.k.weight, self.v.weight):
            small_init_(w, d)
        if self.in_proj is not None:
            small_init_(self.in_proj.weight, d)
        with torch.no_grad():
            self.igate.weight.zero_()
            self.fgate.weight.zero_()
            self.fgate.bias.copy_(forget_bias_linspace(self.num_heads))
            nn.init.normal_(self.igate.bias, 0.0, 0.1)
        self.init_for_stack(0, 1)

    def init_for_stack(self, index: int, num_blocks: int) -> None:
        wang_init_(self.down.weight, self.hidden_dim, num_blocks)

    def initial_state(self, batch_size: int, *, device=None, dtype=None) -> MLSTMState:
        dtype = dtype or self.up.weight.dtype
        mem = compute_dtype(dtype)
        NH, DH = self.num_heads, self.head_dim
        return MLSTMState(
            torch.zeros(batch_size, NH, DH, DH, device=device, dtype=mem),
            torch.zeros(batch_size, NH, DH, device=device, dtype=mem),
            torch.zeros(batch_size, NH, device=device, dtype=mem),
            torch.zeros(
                batch_size, self.conv.kernel - 1, self.inner_dim, device=device, dtype=dtype
            ),
        )

    def heads(self, x: Tensor) -> Tensor:
        """(B, T, D) -> (B, NH, T, DH)."""
        return x.unflatten(-1, (self.num_heads, self.head_dim)).transpose(1, 2)

    def memory(self, q: Tensor, k: Tensor, v: Tensor, i_pre: Tensor, f_pre: Tensor, state):
        """The matrix memory over a window: q, k, v (B, NH, T, DH), gates (B, NH, T) ->
        (h (B, NH, T, DH), memory); the recurrent form for one step, chunkwise otherwise."""
        if q.shape[2] == 1:
            return mlstm_recurrent(q, k, v, i_pre, f_pre, state[:3])
        return mlstm_chunkwise(q, k, v, i_pre, f_pre, state[:3], chunk_size=self.chunk_size)

    def reference_window(self, x: Tensor, state: MLSTMState, constants=None):
        """x (B, T, E) -> (B, T, d), the block as in the module docstring."""
        x = self.lift(x)  # (B, T, d)
        u, z = self.up(self.norm(x)).chunk(2, dim=-1)  # (B, T, D) each
        u_conv, conv_buffer = self.conv(u, state.conv)
        u_conv = F.silu(u_conv)
        q, k, v = self.q(u_conv), self.k(u_conv), self.v(u)  # (B, T, D) each
        qkv = torch.cat([q, k, v], dim=-1)  # (B, T, 3D)
        i_pre = self.igate(qkv).transpose(1, 2)  # (B, T, NH) -> (B, NH, T)
        f_pre = self.fgate(qkv).transpose(1, 2)
        h, memory = self.memory(self.heads(q), self.heads(k), self.heads(v), i_pre, f_pre, state)
        h = self.head_norm(h.transpose(1, 2).flatten(2))  # (B, NH, T, DH) -> (B, T, D)
        h = (h + self.skip * u_conv) * F.silu(z)
        y = x + self.dropout(self.down(h))  # (B, T, d)
        return y, MLSTMState(*memory, conv_buffer)

    def extra_repr(self) -> str:
        return f"d={self.hidden_dim}, inner={self.inner_dim}, heads={self.num_heads}, chunk={self.chunk_size}"
