"""Test helpers for the window kernels against the cells' reference loops (importable as
`kernel_support`: tests/ is on pytest's pythonpath)."""

from __future__ import annotations

from contextlib import nullcontext

import torch

from lstmlab import kernels
from lstmlab.kernels import packed
from lstmlab.kernels.policy import WINDOW_FUNCTION_MIN_STEPS

from support import count_calls


def path(kernel: bool):
    """A context running the cells' window kernels (True) or their reference loops (False)."""
    return nullcontext() if kernel else kernels.reference_only()


def window_outputs_and_gradients(cell, x, s0, *, kernel, seed=1):
    """A cell's window outputs, final state and the gradients (w.r.t. x, the state tensors that
    require them and every parameter) of a loss weighing every output differently; also the
    name of y's autograd node, to tell which path ran. The seed fixes the dropout masks."""
    torch.manual_seed(seed)
    with path(kernel):
        y, s = cell(x, s0)
    ramp = torch.linspace(-1.0, 1.0, y.numel(), dtype=y.dtype).view_as(y)
    loss = (y * ramp).sum()
    for k, part in enumerate(s):
        loss = loss + (0.3 * (k + 1) * part + part**2).sum()
    wrt = [x, *(t for t in s0 if t.requires_grad), *cell.parameters()]
    grads = torch.autograd.grad(loss, wrt)
    return (y, *s, *grads), y.grad_fn.name()


def long_window_steps(batch: int) -> int:
    """The fewest steps at which a window of `batch` streams runs a cell's window Function
    without gradients (`kernels.policy.function_applies`)."""
    return max(WINDOW_FUNCTION_MIN_STEPS, -(-packed.MIN_PACKED_ROW_STEPS // batch))


def assert_kernel_without_gradients(cell, x, monkeypatch, *, node, target):
    """Without gradients a short window (x, fewer than WINDOW_FUNCTION_MIN_STEPS steps, as in
    sampling) keeps the step loop and a long one (`long_window_steps`) runs the window
    Function where packing applies (float32 CPU), both with the step loop's outputs; in
    float64 every no-grad window keeps the loop. With gradients the Function always runs.
    `node` names the Function's autograd node, `target` is the import path its kernel calls
    it by."""
    assert x.shape[1] < WINDOW_FUNCTION_MIN_STEPS
    long_x = x.repeat(1, -(-long_window_steps(x.shape[0]) // x.shape[1]), 1)  # (B, long, E)
    for dtype in (torch.float32, torch.float64):
        cell.to(dtype)
        for inputs in (x.to(dtype), long_x.to(dtype)):
            s0 = cell.initial_state(x.shape[0], dtype=dtype)
            y, _ = cell(inputs, s0)
            assert node in y.grad_fn.name()
            with torch.no_grad(), kernels.reference_only():
                expected, _ = cell(inputs, s0)
            with monkeypatch.context() as patch:
                calls = count_calls(patch, target)
                with torch.no_grad():
                    y, _ = cell(inputs, s0)
            long = inputs.shape[1] == long_x.shape[1]
            assert bool(calls) == (long and dtype == torch.float32)
            torch.testing.assert_close(y, expected)
