"""The throughput benchmark: a tiny-size smoke run, its JSON and markdown, ratios, configs, memory probe."""

from __future__ import annotations

import json

import pytest
import torch

from lstmlab import bench
from lstmlab.bench import (
    METRICS,
    YARDSTICK,
    BenchSettings,
    TorchLSTMLanguageModel,
    build_bench_model,
    cpu_peak_allocated_bytes,
    reference_cell_config,
    run_benchmark,
    write_results,
)
from lstmlab.cells import CELLS
from lstmlab.errors import UsageError

TINY = BenchSettings(sizes=(8, 12), windows=(4, 6), batch_size=2, steps=10, warmup=1, threads=1)


@pytest.fixture(scope="module")
def report():
    return run_benchmark(TINY)


def test_points_are_two_curves_through_the_reference():
    settings = BenchSettings(sizes=(512, 256, 1024), windows=(128, 512, 2048))
    assert settings.points() == [(512, 128), (256, 128), (1024, 128), (512, 512), (512, 2048)]


def test_smoke_rows_cover_every_registered_cell_and_the_yardstick(report):
    seen = {(r.cell, r.hidden, r.window) for r in report.rows}
    expected = {(c, h, w) for c in [YARDSTICK, *CELLS] for h, w in TINY.points()}
    assert seen == expected and len(report.rows) == len(expected)
    for row in report.rows:
        for metric in METRICS:
            assert getattr(row, metric) > 0
        base = next(
            r
            for r in report.rows
            if r.cell == YARDSTICK and (r.hidden, r.window) == (row.hidden, row.window)
        )
        for metric in METRICS:
            assert row.ratios[metric] == pytest.approx(getattr(row, metric) / getattr(base, metric))
        if row.cell == YARDSTICK:
            assert all(v == 1.0 for v in row.ratios.values())
    lstm = next(r for r in report.rows if r.cell == "lstm")
    assert not hasattr(lstm, "target")  # ratios only: the package carries no issue targets
    # the same layout as torch.nn.LSTM: identical parameter counts
    assert lstm.parameters == next(r.parameters for r in report.rows if r.cell == YARDSTICK)


def test_results_files_hold_machine_settings_and_rows(report, tmp_path):
    json_path, md_path = write_results(report, tmp_path / "results")
    assert json_path.parent == md_path.parent == tmp_path / "results"
    assert json_path.stem == md_path.stem and report.created[:10] in json_path.stem
    data = json.loads(json_path.read_text())
    assert {"cpu", "logical_cores", "usable_cores", "torch", "torch_threads"} <= set(
        data["machine"]
    )
    assert data["machine"]["torch"] == torch.__version__ and data["machine"]["torch_threads"] == 1
    assert data["settings"]["batch_size"] == 2 and data["settings"]["steps"] == 10
    assert data["yardstick"] == YARDSTICK and len(data["rows"]) == len(report.rows)
    for row in data["rows"]:
        assert set(METRICS) <= set(row) and set(row["ratios"]) == set(METRICS)
    table_rows = [line for line in md_path.read_text().splitlines() if line.startswith("| ")]
    assert len(table_rows) == 1 + len(report.rows)  # header + one per measurement
    assert data["machine"]["cpu"] in md_path.read_text()


def test_reference_config_applies_paper_settings_and_ignores_unknown_keys(monkeypatch):
    assert reference_cell_config("lstm", 512) == CELLS["lstm"].config(hidden_dim=512).model_dump(
        mode="json"
    )
    monkeypatch.setitem(bench.PAPER_SETTINGS, "lstm", {"forget_bias": 1.0, "num_heads": 4})
    config = reference_cell_config("lstm", 64)
    assert config["forget_bias"] == 1.0 and config["hidden_dim"] == 64 and "num_heads" not in config


def test_yardstick_computes_what_the_lstm_language_model_computes():
    torch.manual_seed(0)
    ours, ref = build_bench_model("lstm", 6), build_bench_model(YARDSTICK, 6)
    assert isinstance(ref, TorchLSTMLanguageModel)
    with torch.no_grad():
        ref.embedding.weight.copy_(ours.embedding.weight)
        ref.head.weight.copy_(ours.head.weight)
        ref.head.bias.copy_(ours.head.bias)
        cell = ours.layers[0]
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(ref.lstm, f"{name}_l0").copy_(getattr(cell, name))
    ids = torch.randint(0, 256, (3, 9))  # (B, T)
    logits, state = ours(ids, ours.initial_state(3))
    logits_ref, (h, c) = ref(ids, ref.initial_state(3))
    torch.testing.assert_close(logits, logits_ref)
    torch.testing.assert_close(state[0].h, h[0])
    torch.testing.assert_close(state[0].c, c[0])


def test_cpu_peak_counts_tensors_alive_together():
    mib = 2**20

    def two_then_one():
        a = torch.empty(mib, dtype=torch.uint8)
        b = torch.empty(2 * mib, dtype=torch.uint8)
        del a, b
        return torch.empty(mib, dtype=torch.uint8)

    peak = cpu_peak_allocated_bytes(two_then_one)
    assert 3 * mib <= peak < 3 * mib + 64 * 1024


def test_peak_memory_grows_with_the_model():
    cpu = torch.device("cpu")
    (small,) = bench.measure_point(["lstm"], 16, 8, TINY, cpu)
    (large,) = bench.measure_point(["lstm"], 64, 8, TINY, cpu)
    params_and_adam = 3 * 4 * large.parameters  # float32 weights + two Adam moments
    assert large.peak_mem_mb * 2**20 > params_and_adam
    assert large.peak_mem_mb > small.peak_mem_mb


@pytest.mark.parametrize(
    "settings, words",
    [
        (BenchSettings(cells=("nope",)), "unknown cell"),
        (BenchSettings(sizes=(0,)), "--sizes"),
        (BenchSettings(windows=()), "--windows"),
        (BenchSettings(steps=3), "--steps"),
        (BenchSettings(warmup=0), "--warmup"),
        (BenchSettings(batch_size=0), "--batch-size"),
    ],
)
def test_bad_settings_are_usage_errors(settings, words):
    with pytest.raises(UsageError, match=words):
        run_benchmark(settings)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_rows_report_device_memory():
    report = run_benchmark(BenchSettings(sizes=(8,), windows=(4,), batch_size=2, device="cuda"))
    assert all(r.device.startswith("cuda") and r.peak_mem_mb > 0 for r in report.rows)
    assert report.machine["gpu"]


def test_timing_interleaves_the_networks_round_by_round():
    """Every round calls each network once, in turn, so load that comes and goes on a shared
    machine falls on the yardstick and the cells alike; no network always goes first; one
    median per network."""
    calls = []
    fns = [lambda name=name: calls.append(name) for name in ("yardstick", "a", "b")]
    medians = bench.interleaved_median_seconds(fns, warmup=2, steps=5, device=torch.device("cpu"))
    warm, timed = calls[:6], calls[6:]
    assert warm == ["yardstick", "a", "b"] * 2
    # one call of each per round, the first place moving on each round
    rounds = [timed[k : k + 3] for k in range(0, 15, 3)]
    assert [r[0] for r in rounds] == ["yardstick", "a", "b", "yardstick", "a"]
    assert all(sorted(r) == ["a", "b", "yardstick"] for r in rounds)
    assert len(medians) == 3 and all(m >= 0 for m in medians)
