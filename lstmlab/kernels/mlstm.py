"""The mLSTM block (`cells.mlstm.MLSTMCell`) computed the fast way, same maths as its reference.

The cell reads as the paper does: q, k, v as block-diagonal maps (B, T, D), the
gates a linear map of concat(q, k, v), then heads for the matrix memory. Here the
same block runs with three rewrites that change no result beyond rounding:

- `folded_gates`: the gates are linear in q, k, v, which are linear in u_conv and
  u, so the gate weights fold through the 4 × 4 blocks into (2 NH, D) weights
  applied to u_conv and u directly; the window-sized q, k, v are neither read by
  the gates nor given a second gradient to add up.
- `block_diagonal_heads`: q and k in one pass (their blocks side by side), each
  map as a grouped 1 × 1 convolution over a channels-last view, which reads the
  (B, T, ·) layout as it lies where a bmm over the blocks would gather its
  operands a few floats at a time; the outputs come out head-major, the layout
  the memory's batched products read, through `_SplitHeads` whose backward writes
  the gradients straight into one interleaved buffer.
- the projections W_up (as two products on its halves, so u comes out contiguous)
  and W_down through oneDNN (`packed.trained_linear`) where it applies.

`lstmlab bench` times the block (docs/performance.md); the tests compare this
kernel with the reference block in float64.

Shapes: B batch, T window, d model width, D inner width, NH heads, DH head dim, G = D / 4.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from lstmlab.kernels.packed import trained_linear


def block_diagonal_heads(
    x: Tensor, weight: Tensor, num_heads: int, maps: int = 1
) -> tuple[Tensor, ...]:
    """x (B, T, G·i) through G blocks `weight` (G, P·o, i) -> P tensors (B, NH, T, DH):
    the block-diagonal map of P maps whose blocks sit side by side along o, each output
    split into NH heads of DH = G·o / NH and written head-major.
    """
    G, Po, i = weight.shape
    # a grouped 1×1 convolution of (B, G·i, 1, T) viewed channels-last is the block map on the
    # (B, T, ·) layout as it lies
    y = F.conv2d(x.transpose(1, 2).unsqueeze(2), weight.reshape(G * Po, i, 1, 1), groups=G)
    y = y.squeeze(2).transpose(1, 2)  # (B, G·P·o, 1, T) channels-last -> (B, T, G·P·o)
    return _SplitHeads.apply(y, num_heads, maps, Po // maps)


class _SplitHeads(torch.autograd.Function):
    """(B, T, G·P·o) with the P maps' o outputs interleaved per block -> P head-major tensors.

    Each output is one strided copy, and the backward writes the P gradients straight
    into one interleaved buffer: the autograd of a permuted reshape and unbind would
    first stack the P gradients, then gather them a few floats at a time.
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


def folded_gates(
    u_conv: Tensor,
    u: Tensor,
    q_weight: Tensor,
    k_weight: Tensor,
    v_weight: Tensor,
    gate_weight: Tensor,
    gate_bias: Tensor,
) -> Tensor:
    """Gate pre-activations (B, O, T) of Linear(concat(q, k, v)) with q, k = blocks of u_conv
    and v = blocks of u (u_conv, u (B, T, D); q/k/v_weight (G, r, r); gate_weight (O, 3D)).

    w · (block map of x) = (w through the blocks) · x: the gate weights on q, k, v fold
    into (O, D) weights on u_conv and u.
    """
    G, r, _ = q_weight.shape
    w_q, w_k, w_v = (w.unflatten(1, (G, r)) for w in gate_weight.chunk(3, dim=1))  # (O, G, r)
    # contiguous, so the transposes below are column-major and the weight gradients are
    # (O × B·T)(B·T × D) products
    w_conv = (
        torch.einsum("ogr,gri->ogi", w_q, q_weight) + torch.einsum("ogr,gri->ogi", w_k, k_weight)
    ).flatten(1)  # (O, D)
    w_u = torch.einsum("ogr,gri->ogi", w_v, v_weight).flatten(1)  # (O, D)
    g = torch.addmm(gate_bias, u_conv.flatten(0, 1), w_conv.t())  # (B·T, O)
    g = g.addmm(u.flatten(0, 1), w_u.t())
    return g.unflatten(0, u.shape[:2]).transpose(1, 2)  # (B, O, T)


def mlstm_kernel(cell, x: Tensor, state, constants=None):
    """(y (B, T, d), state) of `MLSTMCell` over x (B, T, E): its reference block, rewritten
    as the module docstring says. Applies to every dtype and device."""
    x = cell.lift(x)  # (B, T, d)
    # two products on the halves of W_up, not one split: u comes out contiguous and the
    # backward adds two (B, T, d) gradients instead of concatenating two (B, T, D) ones
    x_norm = cell.norm(x)
    w_u, w_z = cell.up.weight.chunk(2, dim=0)  # (D, d) each
    u, z = trained_linear(x_norm, w_u), trained_linear(x_norm, w_z)  # (B, T, D) each
    u_conv, conv_buffer = cell.conv(u, state.conv)
    u_conv = F.silu(u_conv)
    qk_w = torch.cat([cell.q.weight, cell.k.weight], dim=1)  # (G, 8, 4): q's and k's blocks
    q, k = block_diagonal_heads(u_conv, qk_w, cell.num_heads, maps=2)  # (B, NH, T, DH) each
    (v,) = block_diagonal_heads(u, cell.v.weight, cell.num_heads)  # (B, NH, T, DH)
    gates = folded_gates(
        u_conv,
        u,
        cell.q.weight,
        cell.k.weight,
        cell.v.weight,
        torch.cat([cell.igate.weight, cell.fgate.weight]),  # (2 NH, 3D)
        torch.cat([cell.igate.bias, cell.fgate.bias]),  # (2 NH)
    )  # (B, 2 NH, T)
    i_pre, f_pre = gates[:, : cell.num_heads], gates[:, cell.num_heads :]  # (B, NH, T) each
    h, memory = cell.memory(q, k, v, i_pre, f_pre, state)
    h = cell.head_norm(h.transpose(1, 2).flatten(2))  # (B, NH, T, DH) -> (B, T, D)
    h = torch.addcmul(h, cell.skip, u_conv) * F.silu(z)  # (h + s ⊙ u_c) ⊙ SiLU(z)
    y = x + cell.dropout(trained_linear(h, cell.down.weight))  # (B, T, d)
    return y, type(state)(*memory, conv_buffer)
