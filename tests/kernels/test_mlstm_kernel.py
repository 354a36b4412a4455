"""The mLSTM block's kernel (kernels/mlstm.py) against the block's readable reference."""

from __future__ import annotations

import pytest
import torch

from lstmlab import kernels
from lstmlab.cells import build_layer
from lstmlab.cells.configs import MLSTMConfig
from lstmlab.cells.mlstm import block_diagonal
from lstmlab.kernels.mlstm import block_diagonal_heads, folded_gates

from kernel_support import path


def _block(d=16, heads=2, chunk=4, dropout=0.0):
    torch.manual_seed(0)
    block = build_layer(
        MLSTMConfig(hidden_dim=d, num_heads=heads, chunk_size=chunk, dropout=dropout), d
    )
    block = block.double()
    with torch.no_grad():  # nonzero gate and norm weights: the zero init would hide a wrong fold
        for p in block.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return block


def _outputs_and_gradients(block, x, s0, *, kernel):
    torch.manual_seed(1)  # the same dropout masks on both paths
    with path(kernel):
        y, s = block(x, s0)
    ramp = torch.linspace(-1.0, 1.0, y.numel(), dtype=y.dtype).view_as(y)
    loss = (y * ramp).sum() + sum((0.3 * part**2).sum() for part in s)
    grads = torch.autograd.grad(loss, [x, *block.parameters()])
    return (y, *s, *grads)


@pytest.mark.parametrize("steps", [1, 9], ids=["sampling-step", "window"])
def test_kernel_matches_the_reference_block_with_gradients(steps):
    """Outputs, final state and the gradients of x and every parameter equal the readable
    block's (Linear over concat(q, k, v)) in float64, dropout on in training mode."""
    block = _block(dropout=0.1).train()
    x = torch.randn(2, steps, 16, dtype=torch.float64, requires_grad=True)
    s0 = block.initial_state(2, dtype=torch.float64)
    fast = _outputs_and_gradients(block, x, s0, kernel=True)
    ref = _outputs_and_gradients(block, x, s0, kernel=False)
    for a, b in zip(fast, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_the_kernel_runs_unless_reference_only():
    block = _block()
    x = torch.randn(2, 5, 16, dtype=torch.float64)
    s0 = block.initial_state(2, dtype=torch.float64)
    assert kernels.window(block, x, s0) is not None
    with kernels.reference_only():
        assert kernels.window(block, x, s0) is None
    assert kernels.window(block, x, s0) is not None  # restored after the block


def test_folded_gates_equal_a_linear_over_concatenated_qkv():
    torch.manual_seed(0)
    B, T, G, NH = 2, 5, 6, 3
    u_conv, u = torch.randn(2, B, T, 4 * G, dtype=torch.float64, requires_grad=True)
    wq, wk, wv = (torch.randn(G, 4, 4, dtype=torch.float64, requires_grad=True) for _ in range(3))
    gate = torch.nn.Linear(3 * 4 * G, 2 * NH).double()
    got = folded_gates(u_conv, u, wq, wk, wv, gate.weight, gate.bias)  # (B, 2 NH, T)
    qkv = torch.cat(
        [block_diagonal(u_conv, wq), block_diagonal(u_conv, wk), block_diagonal(u, wv)], -1
    )
    torch.testing.assert_close(got, gate(qkv).transpose(1, 2), rtol=0, atol=1e-12)
    inputs = (
        u_conv,
        u,
        wq,
        wk,
        wv,
        gate.weight.detach().requires_grad_(),
        gate.bias.detach().requires_grad_(),
    )
    assert torch.autograd.gradcheck(folded_gates, inputs, fast_mode=True)


def test_block_diagonal_heads_is_block_diagonal_split_into_heads():
    x = torch.randn(2, 3, 24, dtype=torch.float64, requires_grad=True)  # G = 6 blocks of 4
    wa, wb = torch.randn(2, 6, 4, 4, dtype=torch.float64)
    w = torch.cat([wa, wb], dim=1).requires_grad_()
    both = block_diagonal_heads(x, w, num_heads=3, maps=2)
    for out, w_map in zip(both, (wa, wb), strict=True):
        assert out.shape == (2, 3, 3, 8) and out.is_contiguous()  # (B, NH, T, DH)
        ref = block_diagonal(x, w_map).unflatten(-1, (3, 8)).transpose(1, 2)  # (B, NH, T, DH)
        torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)
    assert torch.autograd.gradcheck(lambda x, w: block_diagonal_heads(x, w, 3, 2), (x, w))
