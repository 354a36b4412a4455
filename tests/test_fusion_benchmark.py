"""benchmarks/fusion.py: every way it runs a cell computes the same thing, and its results files."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch

from lstmlab import kernels

from support import REPO


def _fusion():
    spec = importlib.util.spec_from_file_location("fusion", REPO / "benchmarks" / "fusion.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _outputs_and_gradients(model, ids):
    torch.manual_seed(3)
    logits, _ = model(ids, model.initial_state(ids.shape[0]))
    loss = (logits * torch.linspace(-1, 1, logits.numel()).view_as(logits)).sum()
    return [logits.detach(), *torch.autograd.grad(loss, list(model.parameters()))]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit's notice
@pytest.mark.parametrize(
    "kind,compiled", [("multiplicative", True), ("mogrifier", False), ("slstm", False)]
)
def test_every_way_matches_the_eager_loop(kind, compiled):
    """The benchmark compares like with like: TorchScript, compiled and window-Function runs
    give the eager loop's outputs and gradients (float32, so a loose tolerance). Compilation
    takes seconds per way, so one cell covers the compiled ways."""
    fusion = _fusion()
    torch.manual_seed(0)
    model = fusion.build_bench_model(kind, 16).train()
    ids = torch.randint(0, fusion.VOCAB_SIZE, (2, 5))
    cell = fusion.the_cell(model)
    results = {}
    for name in fusion.variants_for(kind):
        if name.startswith("compiled") and not compiled:
            continue
        torch._dynamo.reset()
        with fusion.variant(name, kind, cell):
            results[name] = _outputs_and_gradients(model, ids)
    assert not kernels.reference_forced()  # the kernels are back after the block
    for name, got in results.items():
        for a, b in zip(got, results["eager loop"], strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=f"{kind}: {name}")


def test_writes_a_table_and_json(tmp_path, capsys):
    fusion = _fusion()
    fusion.main(
        [
            "--cells=multiplicative",
            "--variants=eager loop,window Function",
            "--hidden=8",
            "--window=4",
            "--batch=2",
            "--steps=1",
            f"--out-dir={tmp_path}",
        ]
    )
    (md,) = tmp_path.glob("fusion-*.md")
    (js,) = tmp_path.glob("fusion-*.json")
    rows = json.loads(js.read_text())["rows"]
    assert [(r["cell"], r["variant"]) for r in rows] == [
        ("torch.nn.LSTM", "yardstick for multiplicative"),
        ("multiplicative", "eager loop"),
        ("multiplicative", "window Function"),
    ]
    assert all(r["tok_s"] > 0 and r["ratio"] > 0 for r in rows)
    assert rows[0]["ratio"] == pytest.approx(1.0)
    assert "| multiplicative | window Function |" in md.read_text()
