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
for a single step (sampling). State: the matrix memory (C, n, m), kept in float32
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
from torch.autograd.function import once_differentiable

from lstmlab.cells.configs import MLSTMConfig
from lstmlab.cells.gating import compute_dtype, mlstm_chunkwise, mlstm_recurrent
from lstmlab.cells.packed import trained_linear
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


def block_diagonal_heads(
    x: Tensor, weight: Tensor, num_heads: int, maps: int = 1
) -> tuple[Tensor, ...]:
    """x (B, T, G·i) through G blocks `weight` (G, P·o, i) -> P tensors (B, NH, T, DH):
    `block_diagonal` of P maps whose blocks sit side by side along o, each output split
    into NH heads of DH = G·o / NH and written head-major, the layout the matrix memory reads.
    """
    G, Po, i = weight.shape
    # a grouped 1×1 convolution of (B, G·i, 1, T) viewed channels-last is the block map on the
    # (B, T, ·) layout as it lies (6× faster forward and backward than a bmm over G on CPU,
    # which gathers (G, B·T, ·) operands 16 bytes at a time)
    y = F.conv2d(x.transpose(1, 2).unsqueeze(2), weight.reshape(G * Po, i, 1, 1), groups=G)
    y = y.squeeze(2).transpose(1, 2)  # (B, G·P·o, 1, T) channels-last -> (B, T, G·P·o)
    return _SplitHeads.apply(y, num_heads, maps, Po // maps)


class _SplitHeads(torch.autograd.Function):
    """(B, T, G·P·o) with the P maps' o outputs interleaved per block -> P head-major tensors.

    Each output is one strided copy, and the backward writes the P gradients straight
    into one interleaved buffer: the autograd of a permuted reshape and unbind would
    first stack the P gradients, then gather them 16 bytes at a time (~4% of a step).
    """

    @staticmethod
    def forward(ctx, y: Tensor, num_heads: int, maps: int, block_out: int) -> tuple[Tensor, ...]:
        B, T, C = y.shape
        ctx.dims = (B, T, num_heads, C // (num_heads * maps * block_out), maps, block_out)
        blocks = y.view(ctx.dims)  # (B, T, NH, G/NH, P, o)
        return tuple(
            blocks[:, :, :, :, p].transpose(1, 2).reshape(B, num_heads, T, -1)  # (B, NH, T, DH)
            for p in range(maps)
        )

    @staticmethod
    @once_differentiable
    def backward(ctx, *grads: Tensor) -> tuple[Tensor | None, ...]:
        B, T, NH, G_head, P, o = ctx.dims
        d_y = torch.empty(ctx.dims, dtype=grads[0].dtype, device=grads[0].device)
        for p, g in enumerate(grads):  # (B, NH, T, DH) -> (B, T, NH, G/NH, o) in place
            d_y[:, :, :, :, p].copy_(g.view(B, NH, T, G_head, o).transpose(1, 2))
        return d_y.view(B, T, -1), None, None, None  # (B, T, G·P·o)


class MLSTMCell(ResidualBlock):
    """xLSTM mLSTM residual block (matrix memory); `hidden_dim` is the model width d."""

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

    def forward(self, x: Tensor, state: MLSTMState) -> tuple[Tensor, MLSTMState]:
        """x (B, T, E) -> (B, T, d)."""
        x = self.lift(x)  # (B, T, d)
        # two products on the halves of W_up, not one split: u comes out contiguous and the
        # backward adds two (B, T, d) gradients instead of concatenating two (B, T, D) ones
        x_norm = self.norm(x)
        w_u, w_z = self.up.weight.chunk(2, dim=0)  # (D, d) each
        u, z = trained_linear(x_norm, w_u), trained_linear(x_norm, w_z)  # (B, T, D) each
        u_conv, conv_buffer = self.conv(u, state.conv)
        u_conv = F.silu(u_conv)
        # q and k read u_conv in one pass: their 4×4 blocks side by side, (G, 8, 4); q, k, v
        # come out head-major, the layout the memory's batched products read without copies
        qk_w = torch.cat([self.q.weight, self.k.weight], dim=1)  # (G, 8, 4)
        q, k = block_diagonal_heads(u_conv, qk_w, self.num_heads, maps=2)  # (B, NH, T, DH) each
        (v,) = block_diagonal_heads(u, self.v.weight, self.num_heads)  # (B, NH, T, DH)
        i_pre, f_pre = self._gates(u_conv, u)  # (B, NH, T) each
        memory = state[:3]
        if x.shape[1] == 1:
            h, memory = mlstm_recurrent(q, k, v, i_pre, f_pre, memory)
        else:
            h, memory = mlstm_chunkwise(q, k, v, i_pre, f_pre, memory, chunk_size=self.chunk_size)
        h = self.head_norm(h.transpose(1, 2).flatten(2))  # (B, NH, T, DH) -> (B, T, D)
        h = torch.addcmul(h, self.skip, u_conv) * F.silu(z)  # (h + s ⊙ u_c) ⊙ SiLU(z)
        y = x + self.dropout(trained_linear(h, self.down.weight))  # (B, T, d)
        return y, MLSTMState(*memory, conv_buffer)

    def _gates(self, u_conv: Tensor, u: Tensor) -> tuple[Tensor, Tensor]:
        """Input and forget pre-activations from concat(q, k, v), read from u_conv and u.

        The gates are linear in q, k, v, which are block-diagonal maps of u_conv and u,
        so the two products fold into (2 NH, D) weights: the window-sized q, k, v are
        neither read here nor given a second gradient to add up.
        """
        G = self.inner_dim // QKV_BLOCK
        w_q, w_k, w_v = (
            torch.cat(pair, dim=0).unflatten(1, (G, QKV_BLOCK))
            for pair in zip(self.igate.weight.chunk(3, dim=1), self.fgate.weight.chunk(3, dim=1))
        )  # (2 NH, G, 4) each: the weights on q, k, v
        # w · (block map of x) = (w through the blocks) · x; contiguous, so the transposes
        # below are column-major and the weight gradients are (2 NH × B·T)(B·T × D) products
        w_conv = (
            torch.einsum("ogr,gri->ogi", w_q, self.q.weight)
            + torch.einsum("ogr,gri->ogi", w_k, self.k.weight)
        ).flatten(1)  # (2 NH, D)
        w_u = torch.einsum("ogr,gri->ogi", w_v, self.v.weight).flatten(1)  # (2 NH, D)
        b = torch.cat([self.igate.bias, self.fgate.bias])  # (2 NH)
        g = torch.addmm(b, u_conv.flatten(0, 1), w_conv.t())  # (B·T, 2 NH)
        g = g.addmm(u.flatten(0, 1), w_u.t())
        g = g.unflatten(0, u.shape[:2]).transpose(1, 2)  # (B, 2 NH, T)
        return g[:, : self.num_heads], g[:, self.num_heads :]

    def extra_repr(self) -> str:
        return f"d={self.hidden_dim}, inner={self.inner_dim}, heads={self.num_heads}, chunk={self.chunk_size}"
