"""Training: budgets, schedules, metrics, bit-exact resume, non-finite losses, signals."""

from __future__ import annotations

import json
import math
import os
import signal
import threading

import pytest
import torch

from lstmlab import runs
from lstmlab.checkpoint import load_checkpoint
from lstmlab.config import ScheduleConfig, apply_overrides, validate
from lstmlab.errors import ConfigError, TrainingError
from lstmlab.train import TrainingInterrupted, fit, lr_factor

from support import TINY_RECIPE


def _cfg(*overrides):
    return validate(apply_overrides(TINY_RECIPE, list(overrides)))


def _params(run_dir, which="last"):
    return load_checkpoint(runs.checkpoint_path(run_dir, which))["model"]


def test_trains_writes_metrics_and_checkpoints(tiny_corpus, tmp_path):
    run = runs.prepare_run_dir(tmp_path / "run")
    result = fit(_cfg("train.max_steps=8"), run)
    assert result.state.step == 8 and result.stop_reason == "max_steps"
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    kinds = [r["kind"] for r in records]
    assert kinds.count("train") == 4 and kinds.count("valid") == 2 and kinds[-1] == "end"
    assert all(math.isfinite(r["bpc"]) for r in records if r["kind"] in ("train", "valid"))
    assert (run / "checkpoints" / "best.pt").is_file() and (run / "config.yaml").is_file()


def test_loss_goes_down(tiny_corpus, tmp_path):
    run = runs.prepare_run_dir(tmp_path / "run")
    result = fit(_cfg("train.max_steps=60", "train.eval_every=60", "model.dropout.hidden=0.0"), run)
    first = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
    assert result.final_valid["bpc"] < first["bpc"] - 0.5


def test_resume_is_bit_identical(tiny_corpus, tmp_path):
    straight = runs.prepare_run_dir(tmp_path / "straight")
    fit(_cfg("train.max_steps=20"), straight)
    split = runs.prepare_run_dir(tmp_path / "split")
    fit(_cfg("train.max_steps=10"), split)
    fit(_cfg("train.max_steps=20"), split, resume=True)
    a, b = _params(straight), _params(split)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    steps = [
        json.loads(line)["step"] for line in (split / "metrics.jsonl").read_text().splitlines()
    ]
    assert steps == sorted(steps)  # metrics after the checkpoint were not duplicated


def test_same_seed_same_losses(tiny_corpus, tmp_path):
    losses = []
    for name in ("a", "b"):
        run = runs.prepare_run_dir(tmp_path / name)
        fit(_cfg("train.max_steps=6"), run)
        losses.append(
            [
                json.loads(line).get("loss")
                for line in (run / "metrics.jsonl").read_text().splitlines()
            ]
        )
    assert losses[0] == losses[1]


def test_resume_refuses_a_different_architecture(tiny_corpus, tmp_path):
    run = runs.prepare_run_dir(tmp_path / "run")
    fit(_cfg("train.max_steps=2"), run)
    with pytest.raises(ConfigError, match="model.cell.hidden_dim"):
        fit(_cfg("train.max_steps=4", "model.cell.hidden_dim=32"), run, resume=True)


def test_token_and_epoch_budgets(tiny_corpus, tmp_path):
    run = runs.prepare_run_dir(tmp_path / "tok")
    result = fit(_cfg("train.max_steps=null", "train.max_tokens=300"), run)
    assert result.stop_reason == "max_tokens" and result.state.tokens_seen >= 300
    run = runs.prepare_run_dir(tmp_path / "ep")
    result = fit(_cfg("train.max_steps=null", "train.max_epochs=1.5"), run)
    assert result.stop_reason == "max_epochs" and result.state.epoch == 1


def test_schedules():
    cos = ScheduleConfig(name="cosine", warmup_steps=10, min_lr_ratio=0.1)
    assert lr_factor(0, cos, 110, 5) == pytest.approx(0.1)
    assert lr_factor(9, cos, 110, 5) == pytest.approx(1.0)
    assert lr_factor(10, cos, 110, 5) == pytest.approx(1.0)
    assert lr_factor(110, cos, 110, 5) == pytest.approx(0.1)
    assert lr_factor(60, cos, 110, 5) == pytest.approx(0.55)
    step = ScheduleConfig(name="step", milestones_epochs=(2, 4), factor=0.1)
    assert [lr_factor(s, step, None, 5) for s in (9, 10, 19, 20)] == pytest.approx(
        [1, 0.1, 0.1, 0.01]
    )


def test_cosine_needs_a_step_budget(tiny_corpus, tmp_path):
    run = runs.prepare_run_dir(tmp_path / "run")
    with pytest.raises(ConfigError, match="cosine"):
        fit(_cfg("train.max_steps=null", "train.max_minutes=1", "train.schedule.name=cosine"), run)


def _poison_loss(monkeypatch, *, at_call: int, value: float) -> None:
    """Make the training loss non-finite (times `value`) at the `at_call`-th loss computation."""
    import lstmlab.train as train_mod

    real = train_mod.F.cross_entropy
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        calls["n"] += 1
        out = real(*args, **kwargs)
        return out * value if calls["n"] == at_call else out

    monkeypatch.setattr(train_mod.F, "cross_entropy", poisoned)


def test_nonfinite_loss_stops_with_the_step_and_keeps_last(tiny_corpus, tmp_path, monkeypatch):
    run = runs.prepare_run_dir(tmp_path / "run")
    fit(_cfg("train.max_steps=4"), run)
    before = _params(run)
    _poison_loss(monkeypatch, at_call=3, value=float("nan"))
    with pytest.raises(TrainingError, match="at step 7"):
        fit(_cfg("train.max_steps=10", "train.eval_every=100"), run, resume=True)
    after = _params(run)
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_nonfinite_skip_continues(tiny_corpus, tmp_path, monkeypatch):
    _poison_loss(monkeypatch, at_call=2, value=float("inf"))
    run = runs.prepare_run_dir(tmp_path / "run")
    result = fit(_cfg("train.max_steps=5", "train.on_nonfinite=skip", "train.eval_every=100"), run)
    assert result.state.step == 5
    assert any(
        json.loads(line)["kind"] == "skip"
        for line in (run / "metrics.jsonl").read_text().splitlines()
    )


def test_sigint_saves_last_and_names_the_resume_command(tiny_corpus, tmp_path):
    run = runs.prepare_run_dir(tmp_path / "run")
    timer = threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(TrainingInterrupted) as err:
            fit(_cfg("train.max_steps=100000", "train.eval_every=100000"), run)
    finally:
        timer.cancel()
    assert err.value.exit_code == 130 and f"--resume {run}" in err.value.hint
    ckpt = load_checkpoint(runs.checkpoint_path(run, "last"))
    assert ckpt["train_state"]["step"] > 0


def test_window_sum_loss_scales_the_gradient_by_the_window(tiny_corpus, tmp_path):
    # Plain SGD, no clipping: a window-summed loss at lr/T takes exactly the mean loss's step at lr.
    common = ("train.optimizer.name=sgd", "train.grad_clip=null", "train.max_steps=1")
    bptt = TINY_RECIPE["train"]["bptt"]
    mean = runs.prepare_run_dir(tmp_path / "mean")
    fit(_cfg(*common, "train.optimizer.lr=0.5"), mean)
    summed = runs.prepare_run_dir(tmp_path / "sum")
    fit(_cfg(*common, f"train.optimizer.lr={0.5 / bptt}", "train.loss=window_sum"), summed)
    naive = runs.prepare_run_dir(tmp_path / "naive")
    fit(_cfg(*common, "train.optimizer.lr=0.5", "train.loss=window_sum"), naive)
    a, b, c = _params(mean), _params(summed), _params(naive)
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-6, rtol=1e-5)
    assert any(not torch.allclose(a[k], c[k]) for k in a)


def test_linear_schedule_reaches_its_floor_and_stays():
    lin = ScheduleConfig(name="linear", min_lr_ratio=0.07, decay_steps=100)
    assert [lr_factor(s, lin, 1000, 5) for s in (0, 50, 100, 500)] == pytest.approx(
        [1.0, 0.535, 0.07, 0.07]
    )


def test_matrices_decay_spares_biases_norms_and_embedding():
    from lstmlab.config import ModelConfig
    from lstmlab.model import build_model
    from lstmlab.train import decay_groups

    model = build_model(
        ModelConfig.model_validate(
            {
                "embed_dim": 8,
                "num_layers": 2,
                "final_norm": True,
                "cell": {"kind": "mlstm", "hidden_dim": 8, "num_heads": 2},
            }
        ),
        vocab_size=11,
    )
    decayed, spared = decay_groups(model, 0.1, "matrices")
    assert decayed["weight_decay"] == 0.1 and spared["weight_decay"] == 0.0
    assert all(p.ndim >= 2 for p in decayed["params"]) and all(
        p is not model.embedding.weight for p in decayed["params"]
    )
    assert any(p is model.embedding.weight for p in spared["params"])
    assert len(decayed["params"]) + len(spared["params"]) == len(list(model.parameters()))
    (everything,) = decay_groups(model, 0.1, "all")
    assert len(everything["params"]) == len(list(model.parameters()))
