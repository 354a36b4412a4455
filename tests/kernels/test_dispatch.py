"""The one dispatch point: each cell class names its window kernel; `kernels.window` runs it
where it applies, else the cell's reference loop runs; `reference_only()` forces the loop.
And the `lstm` kernel's choice under CPU autocast, where oneDNN may have no bf16 LSTM."""

from __future__ import annotations

import pytest
import torch

from lstmlab import kernels
from lstmlab.cells import CELLS, RecurrentCell, build_layer
from lstmlab.cells.configs import LSTMConfig, MogrifierConfig
from lstmlab.kernels import lstm as lstm_kernel_module

from support import count_calls


def test_every_registered_cell_names_a_known_kernel_and_the_base_names_none():
    assert RecurrentCell.window_kernel is None
    for kind, spec in CELLS.items():
        assert spec.module.window_kernel in kernels.WINDOW_KERNELS, kind
    assert len({spec.module.window_kernel for spec in CELLS.values()}) == len(CELLS)


def test_reference_only_nests_and_restores():
    cell = build_layer(LSTMConfig(hidden_dim=4), 3)
    x, s0 = torch.randn(2, 5, 3), cell.initial_state(2)
    with kernels.reference_only():
        with kernels.reference_only():
            assert kernels.window(cell, x, s0, cell.recurrent_weight()) is None
        assert kernels.window(cell, x, s0, cell.recurrent_weight()) is None
    assert kernels.window(cell, x, s0, cell.recurrent_weight()) is not None


def test_init_for_stack_is_a_no_op_for_recurrent_cells():
    cell = build_layer(LSTMConfig(hidden_dim=4), 3)
    before = {k: v.clone() for k, v in cell.state_dict().items()}
    cell.init_for_stack(1, 3)
    for key, value in cell.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_fused_lstm_applies_except_where_cpu_autocast_has_no_fused_lstm(monkeypatch):
    """Outside CPU autocast the fused kernel always applies (no probe); under it, it applies
    exactly where the one-time probe found a reduced-precision LSTM."""
    x = torch.randn(2, 3, 4)

    def no_probe(dtype):
        raise AssertionError("probed outside autocast")

    monkeypatch.setattr(lstm_kernel_module, "fused_lstm_runs_under_cpu_autocast", no_probe)
    assert lstm_kernel_module.fused_lstm_applies(x)
    for found in (False, True):
        monkeypatch.setattr(
            lstm_kernel_module, "fused_lstm_runs_under_cpu_autocast", lambda d, found=found: found
        )
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert lstm_kernel_module.fused_lstm_applies(x) == found


def test_probe_runs_once_per_dtype_and_agrees_with_torch_lstm():
    probe = lstm_kernel_module.fused_lstm_runs_under_cpu_autocast
    found = probe(torch.bfloat16)
    hits = probe.cache_info().hits
    assert probe(torch.bfloat16) == found and probe.cache_info().hits == hits + 1
    lstm = torch.nn.LSTM(4, 4, batch_first=True)
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            lstm(torch.randn(1, 2, 4))
        ran = True
    except RuntimeError:
        ran = False
    assert found == ran


@pytest.mark.parametrize(
    "make",
    [
        lambda: build_layer(LSTMConfig(hidden_dim=8), 5),
        lambda: build_layer(MogrifierConfig(hidden_dim=8, rounds=0), 5),
    ],
    ids=["lstm", "mogrifier-r0"],
)
def test_cpu_bf16_autocast_trains_on_either_path(make, monkeypatch):
    """Under CPU bf16 autocast an LSTM window trains (finite output, float32 gradients)
    whichever way the probe went here; without a fused bf16 LSTM it is the step loop's,
    which torch.lstm never sees."""
    torch.manual_seed(0)
    cell = make().train()
    x = torch.randn(2, 6, 5)
    s0 = cell.initial_state(2)
    lstm_calls = count_calls(monkeypatch, "torch.lstm")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y, state = cell(x, s0)
        with kernels.reference_only():
            ref, _ = cell(x, s0)
    assert y.shape == (2, 6, 8) and torch.isfinite(y).all()
    y.float().sum().backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in cell.parameters())
    assert bool(lstm_calls) == lstm_kernel_module.fused_lstm_runs_under_cpu_autocast(torch.bfloat16)
    torch.testing.assert_close(y.float(), ref.float(), rtol=0.05, atol=0.05)
