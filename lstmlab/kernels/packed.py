"""One matrix multiplied by a small batch of rows at every step of a window: packed once for oneDNN.

A recurrent step multiplies a (B, in) slice by the same matrix T times. On CPU,
torch.mm is MKL's sgemm, which re-packs the matrix on every call; oneDNN's matmul
on a matrix reordered once for that row count skips that work at every step
(benchmarks/fusion.py and docs/performance.md measure the difference).
torch.nn.LSTM's CPU kernel is oneDNN too, so the hand-written window Functions use
the tool the yardstick uses. `linear` and `matmul` serve their window-sized
products, and `trained_linear` is the same as an autograd linear layer (the mLSTM
block's projections).

Only float32 CPU tensors take the packed path, and only when this torch was
built with oneDNN and exposes its matmul ops (`torch.ops.mkldnn`, as inductor
uses them). Everything else (float64 for gradcheck, CUDA, bfloat16) uses
torch.mm / torch.addmm, the reference the tests compare the packed path against;
so does code being traced by torch.compile, whose inductor cannot lower the packed
matrix (it packs weights its own way). `LSTMLAB_ONEDNN=0` in the environment, or
`torch.backends.mkldnn.enabled = False`, turns the packed path off.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable


def _ops_available() -> bool:
    if not torch.backends.mkldnn.is_available():
        return False
    ops = torch.ops.mkldnn
    try:
        return hasattr(ops, "_linear_pointwise") and hasattr(ops, "_reorder_linear_weight")
    except RuntimeError:  # an op namespace that fails to load
        return False


_AVAILABLE = _ops_available()


def packing_applies(matrix: Tensor) -> bool:
    """Whether products with `matrix` take oneDNN's packed path (see the module docstring)."""
    return (
        _AVAILABLE
        and torch.backends.mkldnn.enabled  # a user who turned oneDNN off keeps it off
        and not torch.compiler.is_compiling()  # inductor cannot lower the opaque packed matrix
        and matrix.device.type == "cpu"
        and matrix.dtype == torch.float32
        and os.environ.get("LSTMLAB_ONEDNN", "1") != "0"
    )


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """x (..., in) Wᵀ (+ b) with W (out, in), through oneDNN where `packing_applies`, else F.linear.

    For the window-sized products inside the hand-written Functions (no autograd), whose
    tall-and-thin shapes (T·B rows) oneDNN serves at least as well as MKL.
    """
    if not packing_applies(weight):
        return F.linear(x, weight, bias)
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")


class _OneDNNLinear(torch.autograd.Function):
    """F.linear with oneDNN for the forward and the input's gradient; the weight's gradient,
    (out, rows) @ (rows, in), is as fast in MKL (torch.mm)."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        x, weight = ctx.saved_tensors
        d_x = d_weight = d_bias = None
        if ctx.needs_input_grad[0]:
            d_x = torch.ops.mkldnn._linear_pointwise(grad, weight.t(), None, "none", [], "")
        rows = grad.reshape(-1, grad.shape[-1])  # (N, out)
        if ctx.needs_input_grad[1]:
            d_weight = rows.t() @ x.reshape(-1, x.shape[-1])  # (out, in)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            d_bias = rows.sum(0)
        return d_x, d_weight, d_bias


def trained_linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """F.linear under autograd, with oneDNN's products where `packing_applies` (float32 CPU):
    for layers outside the window Functions, e.g. the mLSTM block's projections."""
    if (
        not packing_applies(weight)
        or x.dtype != weight.dtype
        or torch.is_autocast_enabled(x.device.type)  # autocast picks F.linear's dtype
    ):
        return F.linear(x, weight, bias)
    return _OneDNNLinear.apply(x, weight, bias)


def matmul(a: Tensor, b: Tensor) -> Tensor:
    """a (M, K) @ b (K, N), as `linear`."""
    return linear(a, b.t())


# Below this many matrix entries oneDNN's fixed per-call overhead outweighs what its
# faster kernel saves on a small batch of rows (the crossover depends on the CPU: re-time
# StepProduct against torch.mm when moving to another).
MIN_PACKED_ENTRIES = 1 << 18
# Packing is a one-off cost per window that each product repays in proportion to its rows:
# a window packs only when rows x steps reaches this, so a single stream (dynamic
# evaluation's short segments) keeps torch.mm unless its window is long.
MIN_PACKED_ROW_STEPS = 64


class StepProduct:
    """a ↦ a @ matrix (+ add) for many (rows, in) operands `a` against one (in, out) `matrix`.

    Build it once per window from the window's matrix (already weight-normalised or
    DropConnected), call it at each of the window's `steps` steps. oneDNN's packing is
    tuned for `rows`; other row counts still give the right product.
    """

    def __init__(self, matrix: Tensor, rows: int, steps: int) -> None:
        self.matrix = matrix  # (in, out)
        self.packed: Tensor | None = None
        if (
            packing_applies(matrix)
            and matrix.numel() >= MIN_PACKED_ENTRIES
            and rows * steps >= MIN_PACKED_ROW_STEPS
        ):
            # an opaque oneDNN tensor, from (out, in) as a linear layer's weight; reordering a
            # contiguous matrix reads memory in order, a transposed view would not
            weight = matrix.detach().t().contiguous()
            self.packed = torch.ops.mkldnn._reorder_linear_weight(weight, rows)

    def __call__(
        self, a: Tensor, *, add: Tensor | None = None, out: Tensor | None = None
    ) -> Tensor:
        """a (rows, in) @ matrix, plus `add` ((out,) or (rows, out)) when given, into `out` when given."""
        if self.packed is None:
            if add is None:
                return torch.mm(a, self.matrix, out=out)
            return torch.addmm(add, a, self.matrix, out=out)
        vector = add if add is not None and add.dim() == 1 else None
        y = torch.ops.mkldnn._linear_pointwise(a, self.packed, vector, "none", [], "")
        if add is not None and vector is None:
            y.add_(add)
        if out is None:
            return y
        return out.copy_(y)
