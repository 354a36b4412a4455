"""Constants shared by tests (importable as `support`: tests/ is on pytest's pythonpath)."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

TINY_TEXT = (
    "the quick brown fox jumps over the lazy dog.\n"
    "pack my box with five dozen liquor jugs!\n"
    "how vexingly quick daft zebras jump?\n"
) * 60


TINY_RECIPE = {
    "seed": 0,
    "data": {"corpus": "tiny"},
    "model": {
        "embed_dim": 8,
        "num_layers": 2,
        "cell": {"kind": "lstm", "hidden_dim": 16},
        "dropout": {"hidden": 0.1, "output": 0.1, "weight": 0.1, "embedding": 0.1, "input": 0.1},
    },
    "train": {
        "batch_size": 4,
        "bptt": 16,
        "optimizer": {"name": "adam", "lr": 0.01},
        "grad_clip": 1.0,
        "max_steps": 6,
        "eval_every": 4,
        "log_every": 2,
    },
    "eval": {"batch_size": 3, "bptt": 32},
}


def check_carried_state(cell, x, split: int):
    """Assert that two windows (split at `split`) and T = 1 steps both equal one long window.

    x (B, T, E) in the cell's dtype; returns the long window's final state for further checks.
    """
    import torch

    s0 = cell.initial_state(x.shape[0], dtype=x.dtype)
    full, s_full = cell(x, s0)
    first, s = cell(x[:, :split], s0)
    second, s = cell(x[:, split:], s)
    torch.testing.assert_close(torch.cat([first, second], 1), full)
    for a, b in zip(s, s_full):
        torch.testing.assert_close(a, b)
    outs, s = [], s0
    for x_t in x.unbind(1):
        y_t, s = cell.step(x_t, s)
        outs.append(y_t)
    torch.testing.assert_close(torch.stack(outs, 1), full)
    return s_full


def gradcheck_cell(cell, state_type, batch=2, steps=3, fast_mode=False) -> bool:
    """torch.autograd.gradcheck of a float64 cell's window call w.r.t. x, h0, c0 and every parameter."""
    import torch

    x = torch.randn(batch, steps, cell.input_dim, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(batch, cell.hidden_dim, dtype=torch.float64, requires_grad=True)
    c0 = torch.randn(batch, cell.hidden_dim, dtype=torch.float64, requires_grad=True)
    names = [n for n, _ in cell.named_parameters()]
    weights = [p.detach().clone().requires_grad_() for p in cell.parameters()]

    def fn(x, h0, c0, *weights):
        y, s = torch.func.functional_call(cell, dict(zip(names, weights)), (x, state_type(h0, c0)))
        return y, s.c

    return torch.autograd.gradcheck(fn, (x, h0, c0, *weights), fast_mode=fast_mode)


def assert_dropout_only_in_training(cell, x, s0):
    """In eval mode a window call is deterministic; in training mode dropout changes the output."""
    import torch

    cell.eval()
    y_eval, _ = cell(x, s0)
    torch.testing.assert_close(cell(x, s0)[0], y_eval)
    cell.train()
    y_train, _ = cell(x, s0)
    assert not torch.allclose(y_train, y_eval)


def count_calls(monkeypatch, target: str) -> list:
    """Wrap the function at import path `target` ('package.module.name'); the returned list
    gains an entry per call."""
    import importlib

    module, _, name = target.rpartition(".")
    original = getattr(importlib.import_module(module), name)
    calls = []

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(target, counting)
    return calls
