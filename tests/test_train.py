"""Training: budgets, schedules, metrics, bit-exact resume, non-finite losses, signals."""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import threading
import types

import pytest
import torch

from lstmlab import runs
from lstmlab.checkpoint import load_checkpoint
from lstmlab.config import ScheduleConfig, apply_overrides, validate
from lstmlab.errors import ConfigError, TrainingError
from lstmlab.optim import lr_factor
from lstmlab.train import TrainingInterrupted, fit

from support import TINY_RECIPE


def _cfg(*overrides):
    return validate(apply_overrides(TINY_RECIPE, list(overrides)))


def _params(run_dir, which="last"):
    return load_checkpoint(runs.checkpoint_path(run_dir, which))["model"]


def test_trains_writes_metrics_and_checkpoints(tiny_corpus, tmp_path):
    run = tmp_path / "run"
    result = fit(_cfg("train.max_steps=8"), run)
    assert result.state.step == 8 and result.stop_reason == "max_steps"
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    kinds = [r["kind"] for r in records]
    assert kinds.count("train") == 4 and kinds.count("valid") == 2 and kinds[-1] == "end"
    assert all(math.isfinite(r["bpc"]) for r in records if r["kind"] in ("train", "valid"))
    assert (run / "checkpoints" / "best.pt").is_file() and (run / "config.yaml").is_file()


def test_loss_goes_down(tiny_corpus, tmp_path):
    run = tmp_path / "run"
    result = fit(_cfg("train.max_steps=60", "train.eval_every=60", "model.dropout.hidden=0.0"), run)
    first = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
    assert result.final_valid["bpc"] < first["bpc"] - 0.5


def test_resume_is_bit_identical(tiny_corpus, tmp_path):
    straight = tmp_path / "straight"
    fit(_cfg("train.max_steps=20"), straight)
    split = tmp_path / "split"
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
        run = tmp_path / name
        fit(_cfg("train.max_steps=6"), run)
        losses.append(
            [
                json.loads(line).get("loss")
                for line in (run / "metrics.jsonl").read_text().splitlines()
            ]
        )
    assert losses[0] == losses[1]


def test_resume_refuses_a_different_architecture(tiny_corpus, tmp_path):
    run = tmp_path / "run"
    fit(_cfg("train.max_steps=2"), run)
    with pytest.raises(ConfigError, match="model.cell.hidden_dim"):
        fit(_cfg("train.max_steps=4", "model.cell.hidden_dim=32"), run, resume=True)


def test_token_and_epoch_budgets(tiny_corpus, tmp_path):
    run = tmp_path / "tok"
    result = fit(_cfg("train.max_steps=null", "train.max_tokens=300"), run)
    assert result.stop_reason == "max_tokens" and result.state.tokens_seen >= 300
    run = tmp_path / "ep"
    result = fit(_cfg("train.max_steps=null", "train.max_epochs=1.5"), run)
    assert result.stop_reason == "max_epochs" and result.state.epoch == 1


def _steps_the_loop_takes(train, stream_length: int) -> int:
    """Step through windows as `next_window` does until `stop_reason` says stop."""
    from lstmlab.train import TrainState, stop_reason

    state, steps_per_epoch = TrainState(), math.ceil(stream_length / train.bptt)
    while stop_reason(train, state, steps_per_epoch) is None:
        if state.stream_pos >= stream_length:
            state.stream_pos = 0
        window = min(train.bptt, stream_length - state.stream_pos)
        state.step += 1
        state.tokens_seen += train.batch_size * window
        state.stream_pos += window
    return state.step


@pytest.mark.parametrize("stream_length", [1, 7, 64, 100, 1499])
@pytest.mark.parametrize("bptt", [1, 16, 33, 1000])
@pytest.mark.parametrize("budget", ["max_tokens", "max_epochs", "max_steps"])
def test_the_step_budget_is_the_steps_the_loop_takes(stream_length, bptt, budget):
    """A token budget counts the short window at every epoch edge (it was max_tokens / (B·bptt))."""
    from lstmlab.optim import total_steps

    values = {"max_tokens": [1, 999, 4 * stream_length * 3, 20_000], "max_epochs": [0.5, 1, 2.5]}
    recipe = _cfg("train.batch_size=4", f"train.bptt={bptt}").train
    for value in values.get(budget, [1, 37]):
        train = recipe.model_copy(update={"max_steps": None, budget: value})
        assert total_steps(train, stream_length) == _steps_the_loop_takes(train, stream_length)


def test_cosine_ends_on_the_last_step_of_a_token_budget(tiny_corpus, tmp_path):
    """Across short windows at epoch edges, the progress total is the steps taken and the lr
    reaches its floor exactly at the end of the budget."""
    from lstmlab.batching import Streams

    length = Streams(tiny_corpus.tokens("train"), 4).length
    bptt = length - 2  # two windows an epoch, the second 2 tokens long
    tokens = 3 * 4 * length  # three epochs, 6 steps; max_tokens / (batch · bptt) said 4
    totals, advanced = [], []

    class Recorder:
        @contextlib.contextmanager
        def task(self, description, total=None, *, unit=""):
            totals.append(total)
            yield types.SimpleNamespace(
                advance=lambda n=1: advanced.append(n), update=lambda **kw: None
            )

    cfg = _cfg(
        "train.max_steps=null",
        f"train.max_tokens={tokens}",
        f"train.bptt={bptt}",
        "train.log_every=1",
        "train.schedule.name=cosine",
        "train.schedule.min_lr_ratio=0.1",
    )
    result = fit(cfg, tmp_path / "run", progress=Recorder())
    assert result.state.step == 6 and result.state.tokens_seen == tokens
    assert totals[0] == sum(advanced) == result.state.step  # the bar ends at its total
    lrs = [
        record["lr"]
        for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
        if (record := json.loads(line))["kind"] == "train"
    ]
    base = cfg.train.optimizer.lr
    assert lrs[-1] == pytest.approx(base * lr_factor(5, cfg.train.schedule, 6, 2))
    assert lrs[-1] > 0.1 * base and lr_factor(6, cfg.train.schedule, 6, 2) == pytest.approx(0.1)


@pytest.mark.parametrize("p", [0.0, 0.5])
def test_drop_state_starts_some_streams_from_the_initial_state(
    tiny_corpus, tmp_path, monkeypatch, p
):
    """train.drop_state: per stream and window, the carried state is reset with probability p."""
    from lstmlab.model import LanguageModel

    starts, forward = [], LanguageModel.forward

    def recording(self, ids, state, **kw):
        if self.training:
            starts.append(torch.stack([layer.h for layer in state]).detach())  # (L, B, H)
        return forward(self, ids, state, **kw)

    monkeypatch.setattr(LanguageModel, "forward", recording)
    fit(
        _cfg("train.max_steps=60", f"train.drop_state={p}", "model.dropout.hidden=0.0"),
        tmp_path / "r",
    )
    steps_per_epoch = math.ceil((len(tiny_corpus.tokens("train")) - 1) // 4 / 16)
    carried = [s for i, s in enumerate(starts) if i % steps_per_epoch]  # not an epoch's first
    reset = torch.cat([(s == 0).all(dim=2).all(dim=0) for s in carried])  # per stream
    if p == 0.0:
        assert not reset.any()
    else:
        assert 0.3 < reset.float().mean() < 0.7, reset.float().mean()


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
    run = tmp_path / "run"
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
    run = tmp_path / "run"
    fit(_cfg("train.max_steps=4"), run)
    before = _params(run)
    _poison_loss(monkeypatch, at_call=3, value=float("nan"))
    with pytest.raises(TrainingError, match="at step 7"):
        fit(_cfg("train.max_steps=10", "train.eval_every=100"), run, resume=True)
    after = _params(run)
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_a_resumed_run_failing_at_its_first_step_shows_failed(tiny_corpus, tmp_path, monkeypatch):
    """Not 'stopped' (resumable as if nothing happened): compare says it failed, and why."""
    from lstmlab import compare

    run = tmp_path / "run"
    fit(_cfg("train.max_steps=4"), run)
    _poison_loss(monkeypatch, at_call=1, value=float("nan"))
    with pytest.raises(TrainingError, match="at step 5"):
        fit(_cfg("train.max_steps=10"), run, resume=True)
    row = compare.read_run(run)
    assert row.state == "failed" and "step 5" in row.stop_reason


def test_nonfinite_skip_continues(tiny_corpus, tmp_path, monkeypatch):
    _poison_loss(monkeypatch, at_call=2, value=float("inf"))
    run = tmp_path / "run"
    result = fit(_cfg("train.max_steps=5", "train.on_nonfinite=skip", "train.eval_every=100"), run)
    assert result.state.step == 5
    assert any(
        json.loads(line)["kind"] == "skip"
        for line in (run / "metrics.jsonl").read_text().splitlines()
    )


def test_sigint_saves_last_and_names_the_resume_command(tiny_corpus, tmp_path):
    run = tmp_path / "run"
    timer = threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(TrainingInterrupted) as err:
            fit(_cfg("train.max_steps=100000", "train.eval_every=100000"), run)
    finally:
        timer.cancel()
    assert err.value.exit_code == 130 and f"--resume {run}" in err.value.hint
    ckpt = load_checkpoint(runs.checkpoint_path(run, "last"))
    step = ckpt["train_state"]["step"]
    assert step > 0
    stop = runs.read_metrics(run)[-1]  # where it stopped, even before its first log line
    assert (stop["kind"], stop["step"], stop["signal"]) == ("stop", step, "SIGINT")
    assert stop["tokens"] == ckpt["train_state"]["tokens_seen"]
    from lstmlab import compare

    row = compare.read_run(run)
    assert (row.state, row.tokens) == ("stopped", stop["tokens"])
    fit(_cfg("train.max_steps=" + str(step + 2)), run, resume=True)  # resumed: no longer stopped
    kinds = [r["kind"] for r in runs.read_metrics(run)]
    assert "stop" not in kinds and kinds[-1] == "end"


def test_window_sum_loss_scales_the_gradient_by_the_window(tiny_corpus, tmp_path):
    # Plain SGD, no clipping: a window-summed loss at lr/T takes exactly the mean loss's step at lr.
    common = ("train.optimizer.name=sgd", "train.grad_clip=null", "train.max_steps=1")
    bptt = TINY_RECIPE["train"]["bptt"]
    mean = tmp_path / "mean"
    fit(_cfg(*common, "train.optimizer.lr=0.5"), mean)
    summed = tmp_path / "sum"
    fit(_cfg(*common, f"train.optimizer.lr={0.5 / bptt}", "train.loss=window_sum"), summed)
    naive = tmp_path / "naive"
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
    from lstmlab.optim import decay_groups

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


# ---------------------------------------------------------------- the loop's parts


def test_stop_reason_is_the_first_budget_reached():
    from lstmlab.train import TrainState, stop_reason

    train = _cfg("train.max_steps=10", "train.max_tokens=640", "train.max_minutes=1").train
    assert stop_reason(train, TrainState(step=9, tokens_seen=576), 5) is None
    assert stop_reason(train, TrainState(step=10, tokens_seen=640), 5) == "max_steps"
    assert stop_reason(train, TrainState(step=3, tokens_seen=640), 5) == "max_tokens"
    assert stop_reason(train, TrainState(step=3, elapsed_s=60.0), 5) == "max_minutes"
    epochs = _cfg("train.max_steps=null", "train.max_epochs=2").train
    assert stop_reason(epochs, TrainState(step=9), 5) is None
    assert stop_reason(epochs, TrainState(step=10), 5) == "max_epochs"


def _started(tmp_path, *overrides):
    from lstmlab.distributed import SINGLE
    from lstmlab.train import open_run_corpus, start_run, with_absolute_data_dir

    cfg = with_absolute_data_dir(_cfg(*overrides))
    run, _ = start_run(
        cfg,
        tmp_path / "run",
        resume=False,
        device=torch.device("cpu"),
        dist=SINGLE,
        corpus=open_run_corpus(cfg),
    )
    return run


def test_train_step_updates_and_reports_the_lr_it_used(tiny_corpus, tmp_path):
    from lstmlab.train import next_window, train_step

    run = _started(tmp_path, "train.schedule.warmup_steps=4")
    before = [p.detach().clone() for p in run.model.parameters()]
    outcome = train_step(run, *next_window(run))
    assert outcome.status == "applied" and torch.isfinite(outcome.loss)
    assert outcome.lr == pytest.approx(0.01 * 1 / 4)  # step 0 of a 4-step warm-up
    assert run.optimizer.param_groups[0]["lr"] == pytest.approx(0.01 * 2 / 4)  # the next one's
    assert any(not torch.equal(a, b) for a, b in zip(before, run.model.parameters()))


def test_train_step_skips_a_nonfinite_step_and_restarts_the_state(
    tiny_corpus, tmp_path, monkeypatch
):
    from lstmlab.train import next_window, train_step

    run = _started(tmp_path, "train.on_nonfinite=skip")
    train_step(run, *next_window(run))
    before = [p.detach().clone() for p in run.model.parameters()]
    _poison_loss(monkeypatch, at_call=1, value=float("nan"))
    outcome = train_step(run, *next_window(run))
    assert outcome.status == "skipped" and "loss became nan" in outcome.reason
    assert all(torch.equal(a, b) for a, b in zip(before, run.model.parameters()))
    assert all(not t.any() for layer in run.state for t in layer)


def test_logged_lr_is_the_one_the_step_used(tiny_corpus, tmp_path):
    run = tmp_path / "run"
    fit(_cfg("train.max_steps=8", "train.log_every=1", "train.schedule.warmup_steps=8"), run)
    logged = [
        r["lr"]
        for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
        if r["kind"] == "train"
    ]
    assert logged == pytest.approx([0.01 * (s + 1) / 8 for s in range(8)])


def test_wall_time_counts_validation_and_step_time_does_not(tiny_corpus, tmp_path):
    result = fit(_cfg("train.max_steps=8", "train.eval_every=2"), tmp_path / "run")
    assert result.state.wall_s > result.state.elapsed_s > 0


# ---------------------------------------------------------------- honest resume


def _records(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_resume_overrides_take_effect_and_are_recorded(tiny_corpus, tmp_path):
    import yaml

    run = tmp_path / "run"
    fit(_cfg("train.max_steps=4"), run)
    fit(
        _cfg(
            "train.max_steps=8",
            "train.optimizer.lr=0.001",
            "train.optimizer.betas=[0.5, 0.9]",
            "train.optimizer.weight_decay=0.01",
        ),
        run,
        resume=True,
    )
    groups = load_checkpoint(runs.checkpoint_path(run, "last"))["optimizer"]["param_groups"]
    assert all(g["lr"] == pytest.approx(0.001) and tuple(g["betas"]) == (0.5, 0.9) for g in groups)
    assert all(g["weight_decay"] == 0.01 for g in groups)
    stored = yaml.safe_load((run / "config.yaml").read_text())["train"]["optimizer"]
    assert stored["lr"] == 0.001 and stored["betas"] == [0.5, 0.9]
    resumed = next(r for r in _records(run) if r["kind"] == "resume")
    assert "train.optimizer.lr" in resumed["changed"] and resumed["step"] == 4
    assert [
        r["lr"] for r in _records(run) if r["kind"] == "train" and r["step"] > 4
    ] == pytest.approx([0.001, 0.001])


@pytest.mark.parametrize(
    "override,field",
    [
        ("seed=1", "seed"),
        ("train.batch_size=2", "train.batch_size"),
        ("train.optimizer.name=sgd", "train.optimizer.name"),
    ],
)
def test_resume_refuses_fields_that_cannot_change(tiny_corpus, tmp_path, override, field):
    run = tmp_path / "run"
    fit(_cfg("train.max_steps=2"), run)
    with pytest.raises(ConfigError, match=field):
        fit(_cfg("train.max_steps=4", override), run, resume=True)


def test_resume_past_the_budget_says_so_and_writes_nothing(tiny_corpus, tmp_path):
    from lstmlab.errors import UsageError

    run = tmp_path / "run"
    fit(_cfg("train.max_steps=4"), run)
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    with pytest.raises(UsageError, match="already reached its budget"):
        fit(_cfg("train.max_steps=4"), run, resume=True)
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


def test_checkpoints_record_the_corpus_and_config_an_absolute_data_dir(tiny_corpus, tmp_path):
    import yaml

    run = tmp_path / "run"
    fit(_cfg("train.max_steps=2"), run)
    corpus = load_checkpoint(runs.checkpoint_path(run, "last"))["corpus"]
    assert corpus["splits"] == {s: i.sha256 for s, i in tiny_corpus.meta.splits.items()}
    data_dir = yaml.safe_load((run / "config.yaml").read_text())["data"]["data_dir"]
    assert os.path.isabs(data_dir) and os.path.samefile(data_dir, tiny_corpus.path.parent)


def test_resume_refuses_a_corpus_that_changed_under_its_name(tiny_corpus, tmp_path):
    import numpy as np

    from lstmlab.corpora.store import write_corpus
    from lstmlab.errors import CorpusError

    run = tmp_path / "run"
    fit(_cfg("train.max_steps=2"), run)
    splits = {s: np.array(tiny_corpus.tokens(s))[::-1].copy() for s in ("train", "valid", "test")}
    import shutil

    shutil.rmtree(tiny_corpus.path)
    write_corpus(tiny_corpus.path.parent, "tiny", tiny_corpus.tokenizer, splits)
    with pytest.raises(CorpusError, match="checksums differ"):
        fit(_cfg("train.max_steps=4"), run, resume=True)


# ---------------------------------------------------------------- refusals before work


def test_a_model_that_cannot_fit_is_refused_before_allocating(tiny_corpus, tmp_path):
    run = tmp_path / "huge"
    with pytest.raises(ConfigError, match="GiB"):
        fit(_cfg("model.cell.hidden_dim=2000000", "model.embed_dim=100000"), run)
    assert not run.exists()  # nothing left that would block the retry


def test_compile_without_a_compiler_is_refused(tiny_corpus, tmp_path, monkeypatch):
    import shutil

    monkeypatch.setattr(shutil, "which", lambda name: None)
    run = tmp_path / "run"
    with pytest.raises(ConfigError, match="C\\+\\+ compiler"):
        fit(_cfg("train.compile=true"), run)
    assert not run.exists()


def test_a_corpus_too_short_for_the_window_is_said(tiny_corpus, tmp_path):
    events = []
    fit(_cfg("train.max_steps=2", "train.bptt=4096"), tmp_path / "run", on_event=events.append)
    warning = next(e for e in events if e["kind"] == "warning")
    assert "fewer than train.bptt 4096" in warning["message"]


def test_a_signal_during_validation_stops_it_and_saves(tiny_corpus, tmp_path, monkeypatch):
    import lstmlab.train as train_mod

    real = train_mod.evaluate

    def interrupted(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)  # arrives while validation runs
        return real(*args, **kwargs)

    monkeypatch.setattr(train_mod, "evaluate", interrupted)
    events, run = [], tmp_path / "run"
    with pytest.raises(TrainingInterrupted, match="step 4"):
        fit(_cfg("train.max_steps=100", "train.eval_every=4"), run, on_event=events.append)
    assert {"kind": "signal", "signal": "SIGINT"} in events  # said at once
    assert not any(r["kind"] == "valid" for r in _records(run))  # the cut validation is not logged
    assert load_checkpoint(runs.checkpoint_path(run, "last"))["train_state"]["step"] == 4


def test_a_diverged_validation_is_reported_not_crashed(tiny_corpus, tmp_path, monkeypatch):
    import lstmlab.train as train_mod
    from lstmlab.evaluate import EvalResult

    monkeypatch.setattr(train_mod, "evaluate", lambda *a, **k: EvalResult(1e7, 10, 10))
    run = tmp_path / "run"
    result = fit(_cfg("train.max_steps=4"), run)  # bpc ~1.4e6: perplexity 2**bpc overflows
    valid = [r for r in _records(run) if r["kind"] == "valid"]
    assert valid and valid[0]["bpc"] > 1e6 and valid[0]["perplexity"] == math.inf
    assert result.state.step == 4 and runs.checkpoint_path(run, "last").is_file()


# ---------------------------------------------------------------- AWD-LSTM's AR and TAR


def _tiny_model(**dropout):
    from lstmlab.config import ModelConfig
    from lstmlab.model import build_model

    cfg = ModelConfig.model_validate(
        {**TINY_RECIPE["model"], "dropout": {"output": 0.5, **dropout}}
    )
    torch.manual_seed(0)
    return build_model(cfg, vocab_size=11)


def test_last_layer_outputs_are_what_the_head_reads_before_and_after_dropout():
    model = _tiny_model()
    ids = torch.randint(0, 11, (3, 7))
    state = model.initial_state(3)
    torch.manual_seed(1)
    logits, _, last = model(ids, state, return_last=True)
    torch.manual_seed(1)
    plain, _ = model(ids, state)
    assert torch.equal(logits, plain)  # asking for them changes nothing
    torch.testing.assert_close(model.head(last.dropped), logits)
    ratio = last.dropped / last.raw  # one locked mask per stream: 0 or 1/(1 - p), fixed over t
    assert set(ratio.round(decimals=4).unique().tolist()) <= {0.0, 2.0}
    assert torch.equal(ratio[:, :1].expand_as(ratio), ratio)
    model.eval()
    _, _, last = model(ids, state, return_last=True)
    assert torch.equal(last.raw, last.dropped)


def test_activation_penalty_is_awd_lstms_ar_plus_tar_by_hand():
    from lstmlab.model import LastLayer
    from lstmlab.train import activation_penalty

    raw = torch.tensor([[[1.0, -2.0], [3.0, 0.0], [0.0, 1.0]]])  # (B 1, T 3, H 2)
    dropped = torch.tensor([[[2.0, 0.0], [6.0, 0.0], [0.0, 2.0]]])
    last = LastLayer(raw, dropped)
    ar = (4 + 0 + 36 + 0 + 0 + 4) / 6  # mean of the dropped output squared
    tar = ((3 - 1) ** 2 + (0 + 2) ** 2 + (0 - 3) ** 2 + (1 - 0) ** 2) / 4  # consecutive raw steps
    assert float(activation_penalty(last, 2.0, 0.0)) == pytest.approx(2 * ar)
    assert float(activation_penalty(last, 0.0, 1.0)) == pytest.approx(tar)
    assert float(activation_penalty(last, 2.0, 1.0)) == pytest.approx(2 * ar + tar)
    one_step = LastLayer(raw[:, :1], dropped[:, :1])  # no consecutive pair: no TAR, no NaN
    assert float(activation_penalty(one_step, 0.0, 1.0)) == 0.0


def test_activation_penalty_reaches_every_layer_but_the_head():
    from lstmlab.train import activation_penalty

    model = _tiny_model()
    _, _, last = model(torch.randint(0, 11, (3, 7)), model.initial_state(3), return_last=True)
    activation_penalty(last, 2.0, 1.0).backward()
    for name, p in model.named_parameters():
        reached = p.grad is not None and bool(p.grad.abs().sum() > 0)
        assert reached != name.startswith("head."), name


def test_penalties_change_the_step_but_not_the_logged_cross_entropy(tiny_corpus, tmp_path):
    def train(name, *overrides):
        run = tmp_path / name
        fit(_cfg("train.max_steps=4", "train.log_every=1", *overrides), run)
        records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        return [r for r in records if r["kind"] == "train"], _params(run)

    plain, p0 = train("plain")
    zeros, p1 = train("zeros", "train.ar_alpha=0.0", "train.tar_beta=0.0")
    awd, p2 = train("awd", "train.ar_alpha=2.0", "train.tar_beta=1.0")
    assert [r["loss"] for r in zeros] == [r["loss"] for r in plain]
    assert all(torch.equal(p0[k], p1[k]) for k in p0) and "penalty" not in plain[0]
    # step 1 starts from the same weights and masks: the same cross-entropy is logged ...
    assert awd[0]["loss"] == plain[0]["loss"] and awd[0]["bpc"] == plain[0]["bpc"]
    assert all(r["penalty"] > 0 for r in awd)
    # ... but the update it took was another one
    assert any(not torch.equal(p0[k], p2[k]) for k in p0)


def test_resume_with_activation_penalties_is_bit_identical(tiny_corpus, tmp_path):
    awd = ("train.ar_alpha=2.0", "train.tar_beta=1.0")
    straight, split = tmp_path / "straight", tmp_path / "split"
    fit(_cfg("train.max_steps=8", *awd), straight)
    fit(_cfg("train.max_steps=4", *awd), split)
    fit(_cfg("train.max_steps=8", *awd), split, resume=True)
    a, b = _params(straight), _params(split)
    assert all(torch.equal(a[k], b[k]) for k in a)


# ---------------------------------------------------------------- LAMB's L2 convention


def test_adam_weight_decay_is_lambs_loss_side_l2_on_the_window_sum(tiny_corpus, tmp_path):
    """LAMB (lamb/lm.py) minimises mean_streams(sum_t xe) + l2 * sum_v tf.nn.l2_loss(v), with
    tf.nn.l2_loss(v) = sum(v^2)/2, over every trainable variable. Adam's coupled weight_decay
    adds wd * v to the gradient, so wd = l2 with loss: window_sum and decay: all."""
    from lstmlab.train import next_window, train_step

    l2 = 0.05
    no_dropout = [f"model.dropout.{k}=0.0" for k in TINY_RECIPE["model"]["dropout"]]
    run = _started(
        tmp_path,
        *no_dropout,
        "train.loss=window_sum",
        "train.grad_clip=null",
        "train.optimizer.betas=[0.0, 0.999]",  # beta1 0: Adam's first moment is the gradient
        f"train.optimizer.weight_decay={l2}",
        "train.optimizer.decay=all",
    )
    x, y = next_window(run)
    state = run.model.initial_state(x.shape[0])
    logits, _ = run.model(x, state)
    xe = torch.nn.functional.cross_entropy(logits.transpose(1, 2), y, reduction="none")  # (B, T)
    params = list(run.model.parameters())
    lamb = xe.sum(dim=1).mean() + l2 * sum((p**2).sum() / 2 for p in params)
    by_hand = torch.autograd.grad(lamb, params)
    train_step(run, x, y)
    for p, g in zip(params, by_hand, strict=True):
        torch.testing.assert_close(run.optimizer.state[p]["exp_avg"], g, rtol=1e-5, atol=1e-7)
