"""Evaluation streams a split with flat memory: a long memmapped split costs no more than a short one.

Two exact probes, each shown to catch a deliberate leak: the peak of torch's
CPU allocations (torch.profiler's allocation events, `lstmlab.bench`) for
tensors, and tracemalloc's peak for numpy buffers and Python objects (a
whole-split copy). Resident-set size is not used: the allocator's caching
makes it move by tens of MiB from run to run.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import torch

from lstmlab.bench import cpu_peak_allocated_bytes
from lstmlab.config import ModelConfig
from lstmlab.evaluate import evaluate
from lstmlab.model import build_model

VOCAB = 64
BATCH, BPTT = 1024, 64  # 65,536 tokens a window: few sequential steps, big per-window tensors
WINDOW_LOGITS_MB = BATCH * BPTT * VOCAB * 4 / 2**20  # 16 MiB of float32 logits per window
MB = 2**20


def traced_peak(fn) -> int:
    """tracemalloc's peak (numpy buffers and Python objects) during fn()."""
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    cfg = ModelConfig.model_validate(
        {"embed_dim": 4, "num_layers": 1, "cell": {"kind": "lstm", "hidden_dim": 8}}
    )
    return build_model(cfg, VOCAB).eval()


@pytest.fixture(scope="module")
def long_split(tmp_path_factory):
    """An 8-window split (0.5 M tokens) as a read-only uint8 memmap, like a prepared corpus."""
    path = tmp_path_factory.mktemp("split") / "test.bin"
    rng = np.random.default_rng(0)
    rng.integers(0, VOCAB, size=8 * BATCH * BPTT + 101, dtype=np.uint8).tofile(path)
    return np.memmap(path, dtype=np.uint8, mode="r")


def _eval(model, tokens) -> None:
    evaluate(model, tokens, batch_size=BATCH, bptt=BPTT)


class _LeakyModel(torch.nn.Module):
    """Keeps every window's logits: the leak the probe must see."""

    def __init__(self, inner) -> None:
        super().__init__()
        self.inner, self.vocab_size, self.kept = inner, inner.vocab_size, []

    def initial_state(self, *args, **kwargs):
        return self.inner.initial_state(*args, **kwargs)

    def forward(self, ids, state):
        logits, state = self.inner(ids, state)
        self.kept.append(logits)
        return logits, state


def _torch_peaks_short_and_long(model, long_split) -> tuple[int, int]:
    """Peak bytes torch allocates while scoring 2 windows, then all 8."""
    short = cpu_peak_allocated_bytes(lambda: _eval(model, long_split[: 2 * BATCH * BPTT + 1]))
    return short, cpu_peak_allocated_bytes(lambda: _eval(model, long_split))


def test_torch_memory_does_not_grow_with_split_length(model, long_split):
    short, long = _torch_peaks_short_and_long(model, long_split)
    assert short > WINDOW_LOGITS_MB * MB  # one window's logits are counted
    # keeping every window would add 6 x 16 MiB of logits alone
    assert long < short + MB, f"{short / MB:.1f} then {long / MB:.1f} MiB"


def test_torch_probe_sees_a_leak_of_logits(model, long_split):
    short, long = _torch_peaks_short_and_long(_LeakyModel(model), long_split)
    assert long > short + 5 * WINDOW_LOGITS_MB * MB, f"{short / MB:.1f} then {long / MB:.1f} MiB"


def test_numpy_and_python_peak_does_not_grow_with_split_length(model, long_split):
    whole_split_int64 = len(long_split) * 8
    probe = traced_peak(lambda: np.asarray(long_split, dtype=np.int64).sum())
    assert probe >= whole_split_int64  # tracemalloc sees numpy buffers: a whole-split copy shows
    short = traced_peak(lambda: _eval(model, long_split[: 2 * BATCH * BPTT + 1]))
    long = traced_peak(lambda: _eval(model, long_split))
    assert long < short + MB / 4, f"{short / MB:.2f} MiB for 2 windows, {long / MB:.2f} MiB for 8"
