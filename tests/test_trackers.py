"""Experiment trackers: records in, read back with each tracker's own reader, offline.

Each test feeds a short training history (with a crash and a resume that redoes steps)
through `open_trackers` into a tmp run folder, then reads what the tracker stored:
TensorBoard through its EventAccumulator, wandb through its offline .wandb log (protobuf
records), MLflow through MlflowClient on a local file store.
"""

from __future__ import annotations

import glob
import json
import struct
import sys
from pathlib import Path

import pytest

from lstmlab.errors import LstmlabError, UsageError
from lstmlab.trackers import (
    TRACKERS,
    flatten,
    metrics_of,
    open_trackers,
    read_memory,
    status_of,
)

CONFIG = {
    "seed": 0,
    "data": {"corpus": "tiny", "data_dir": None},
    "train": {"optimizer": {"name": "adam", "lr": 0.002}, "milestones": [3, 4]},
}


def train(step: int, session: int = 0) -> dict:
    """A train record whose figures say which session wrote them (to tell redone steps)."""
    return {
        "kind": "train",
        "step": step,
        "tokens": 64 * step,
        "epoch": 0,
        "loss": 1.0 / step + session,
        "bpc": 2.0 / step + session,
        "lr": 0.002,
        "tokens_per_s": 1000.0 + step,
        "elapsed_s": 0.1 * step,
        "wall_s": 0.2 * step,
    }


def valid(step: int, bpc: float) -> dict:
    return {
        "kind": "valid",
        "step": step,
        "tokens": 64 * step,
        "loss": bpc * 0.693,
        "bpc": bpc,
        "perplexity": 2.0,
        "valid_tokens": 100,
        "elapsed_s": 0.1 * step,
        "wall_s": 0.2 * step,
    }


def end(step: int) -> dict:
    return {
        "kind": "end",
        "step": step,
        "tokens": 64 * step,
        "reason": "max_steps",
        "elapsed_s": 1.0,
        "wall_s": 2.0,
        "best_valid_bpc": 1.5,
        "best_step": 4,
    }


def crash_then_resume(name: str, run_dir) -> tuple[dict, dict]:
    """Session 0 logs steps 1..6 and dies (last checkpoint at step 4); session 1 resumes at
    4, redoes 5..6 with other figures, goes on to 8 and ends. Returns trackers.json after
    each session."""
    run_dir.mkdir()
    sink = open_trackers([name], run_dir, CONFIG, resume=False)
    for step in range(1, 7):
        sink(train(step))
        if step == 4:
            sink(valid(4, 1.5))
    sink.close("failed")
    first = read_memory(run_dir)
    with open_trackers([name], run_dir, CONFIG, resume=True) as sink:
        sink({"kind": "resume", "step": 4, "changed": []})
        for step in range(5, 9):
            sink(train(step, session=1))
        sink(valid(8, 1.6))
        sink(end(8))
    return first, read_memory(run_dir)


# ---------------------------------------------------------------- the sink itself


def test_registry_lists_the_three_trackers():
    assert sorted(TRACKERS) == ["mlflow", "tensorboard", "wandb"]
    with pytest.raises(TypeError):
        TRACKERS["other"] = TRACKERS["wandb"]  # read-only


def test_unknown_tracker_is_a_usage_error_listing_the_known_ones(tmp_path):
    with pytest.raises(UsageError) as err:
        open_trackers(["tensorbord"], tmp_path, CONFIG, resume=False)
    assert err.value.exit_code == 2
    assert "tensorbord" in err.value.message
    assert err.value.hint == "choose from mlflow, tensorboard, wandb"


@pytest.mark.parametrize(
    "name, module",
    [("tensorboard", "tensorboard"), ("wandb", "wandb"), ("mlflow", "mlflow")],
)
def test_missing_extra_names_the_pip_command(name, module, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, module, None)  # `import module` now raises ImportError
    with pytest.raises(UsageError) as err:
        open_trackers([name], tmp_path / "run", CONFIG, resume=False)
    assert err.value.exit_code == 2
    assert err.value.message == f"the {name} logger needs the {module} package"
    assert err.value.hint == f"pip install 'lstmlab[{module}]'"
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_flatten_gives_dotted_scalar_keys():
    assert flatten(CONFIG) == {
        "seed": 0,
        "data.corpus": "tiny",
        "data.data_dir": "null",
        "train.optimizer.name": "adam",
        "train.optimizer.lr": 0.002,
        "train.milestones": "[3, 4]",
    }


def test_metrics_of_each_record_kind():
    assert metrics_of(train(2)) == {
        "train/loss": 0.5,
        "train/bpc": 1.0,
        "train/lr": 0.002,
        "train/tokens_per_s": 1002.0,
    }
    assert metrics_of(valid(4, 1.5)) == {"valid/bpc": 1.5, "valid/loss": pytest.approx(1.0395)}
    assert metrics_of(end(8)) == {}
    assert metrics_of({"kind": "warning", "message": "x"}) == {}


def test_status_of_tells_interrupts_from_failures():
    from lstmlab.train import TrainingInterrupted

    assert status_of(None) == "finished"
    assert status_of(KeyboardInterrupt()) == "killed"
    assert status_of(TrainingInterrupted("stopped", "resume", 15)) == "killed"
    assert status_of(RuntimeError("boom")) == "failed"
    assert status_of(UsageError("bad")) == "failed"


def test_notices_before_the_first_record_write_nothing(tmp_path):
    """fit may warn before it claims the run folder's contents; nothing may appear there."""
    pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    sink = open_trackers(["tensorboard"], run_dir, CONFIG, resume=False)
    sink({"kind": "warning", "message": "a stale lock was removed"})
    sink({"kind": "signal", "signal": "SIGINT"})
    sink.close("killed")
    assert list(run_dir.iterdir()) == []
    with pytest.raises(ValueError):
        sink.close("crashed")


# ---------------------------------------------------------------- TensorBoard


def _scalars(log_dir) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_tensorboard_scalars_and_hparams_read_back(tmp_path):
    pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    run_dir = tmp_path / "run"
    first, memory = crash_then_resume("tensorboard", run_dir)
    log_dir = run_dir / "tensorboard"
    assert first == memory == {"tensorboard": {"log_dir": str(log_dir)}}
    assert len(glob.glob(str(log_dir / "events.out.tfevents.*"))) == 2  # one per session

    scalars = _scalars(log_dir)
    # steps 5 and 6 were logged twice; purge_step hides the crashed session's copies
    assert [step for step, _ in scalars["train/bpc"]] == list(range(1, 9))
    expected = [train(s)["bpc"] for s in range(1, 5)] + [
        train(s, session=1)["bpc"] for s in range(5, 9)
    ]
    assert [v for _, v in scalars["train/bpc"]] == pytest.approx(expected)
    assert scalars["train/tokens_per_s"][0] == (1, 1001.0)
    assert [s for s, _ in scalars["train/lr"]] == list(range(1, 9))
    assert scalars["valid/bpc"] == [(4, pytest.approx(1.5)), (8, pytest.approx(1.6))]
    assert [s for s, _ in scalars["valid/loss"]] == [4, 8]
    assert scalars["summary/best_valid_bpc"] == [(8, pytest.approx(1.5))]

    # the flattened recipe, once, through the hparams plugin
    acc = EventAccumulator(str(log_dir))
    acc.Reload()
    content = acc.PluginTagToContent("hparams")
    starts = [
        plugin_data_pb2.HParamsPluginData.FromString(raw).session_start_info
        for tag, raw in content.items()
        if tag.endswith("session_start_info")
    ]
    assert len(starts) == 1
    hparams = starts[0].hparams
    assert hparams["train.optimizer.lr"].number_value == pytest.approx(0.002)
    assert hparams["train.optimizer.name"].string_value == "adam"
    assert hparams["train.milestones"].string_value == "[3, 4]"


# ---------------------------------------------------------------- wandb (offline)


@pytest.fixture
def wandb_offline(tmp_path, monkeypatch):
    """wandb with no network, no login, no git probing, and its own files in tmp."""
    wandb = pytest.importorskip("wandb", reason="the wandb extra is not installed")
    for key in ("WANDB_API_KEY", "WANDB_DIR", "WANDB_PROJECT", "WANDB_ENTITY", "WANDB_RUN_ID"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DISABLE_GIT", "true")
    monkeypatch.setenv("WANDB_DISABLE_CODE", "true")
    monkeypatch.setenv("WANDB_X_DISABLE_STATS", "true")
    for key in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(key, str(tmp_path / "wandb-home"))
    yield wandb
    wandb.teardown()  # stop the background service this test started


def wandb_records(path) -> list:
    """The protobuf records of an offline run file.

    The file is a 7-byte header (":W&B", magic, version) and then LevelDB's log format:
    32 KiB blocks of chunks, each `crc32 (4) | length (2, LE) | type (1)` + payload, where
    type 1 is a whole record and 2/3/4 the first/middle/last piece of a split one.
    """
    from wandb.proto import wandb_internal_pb2

    data = Path(path).read_bytes()
    assert data[:4] == b":W&B"
    records, pending, pos = [], b"", 7
    while pos + 7 <= len(data):
        left = 32768 - pos % 32768
        if left < 7:  # a block's tail too short for a chunk header is padding
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        pending += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            records.append(wandb_internal_pb2.Record.FromString(pending))
            pending = b""
    return records


def _items(updates) -> dict:
    return {u.key or "/".join(u.nested_key): json.loads(u.value_json) for u in updates}


def test_wandb_offline_run_is_written_and_resumed(wandb_offline, tmp_path):
    run_dir = tmp_path / "run"
    first, memory = crash_then_resume("wandb", run_dir)
    wandb_offline.teardown()  # the service writes the .wandb files; let it flush and stop
    run_id = first["wandb"]["id"]
    assert memory == first  # the resumed session reused the remembered run

    files = sorted(glob.glob(str(run_dir / "wandb" / "offline-run-*" / "run-*.wandb")))
    assert len(files) == 2  # one offline folder per session, both for the same run id
    assert all(f.endswith(f"run-{run_id}.wandb") for f in files)

    sessions = [wandb_records(f) for f in files]
    runs = [[r.run for r in s if r.HasField("run")] for s in sessions]
    assert [r[0].run_id for r in runs] == [run_id, run_id]
    assert _items(runs[0][0].config.update)["train.optimizer.lr"] == 0.002
    assert "train.optimizer.lr" not in _items(runs[1][0].config.update)  # logged once

    history = [_items(r.history.item) for s in sessions for r in s if r.HasField("history")]
    by_step: dict[int, list[float]] = {}
    for row in history:
        if "train/bpc" in row:
            by_step.setdefault(row.get("_step", 0), []).append(row["train/bpc"])
    # wandb's _step is the training step; each offline session holds what it logged, so
    # the redone steps 5 and 6 are in both (online, wandb drops steps below the run's own)
    assert sorted(by_step) == list(range(1, 9))
    assert by_step[1] == [pytest.approx(2.0)]
    assert by_step[5] == pytest.approx([train(5)["bpc"], train(5, session=1)["bpc"]])
    assert by_step[8] == [pytest.approx(train(8, session=1)["bpc"])]
    valid_rows = [row for row in history if "valid/bpc" in row]
    assert [row["valid/bpc"] for row in valid_rows] == pytest.approx([1.5, 1.6])

    summaries = {}
    for s in sessions:
        for r in s:
            if r.HasField("summary"):
                summaries.update(_items(r.summary.update))
    assert summaries["best_valid_bpc"] == 1.5 and summaries["best_step"] == 4
    exits = [[r.exit.exit_code for r in s if r.HasField("exit")] for s in sessions]
    assert exits == [[1], [0]]  # the crash is a failed run, the resumed session finished


# ---------------------------------------------------------------- MLflow (local store)


@pytest.fixture
def mlflow_local(monkeypatch):
    mlflow = pytest.importorskip("mlflow", reason="the mlflow extra is not installed")
    # MLFLOW_ALLOW_FILE_STORE too: opting in to MLflow 3's file store is the tracker's job
    for key in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_ALLOW_FILE_STORE"):
        monkeypatch.delenv(key, raising=False)
    return mlflow


def _history(client, run_id, key) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def test_mlflow_run_reads_back_through_its_client(mlflow_local, tmp_path):
    run_dir = tmp_path / "run"
    first, memory = crash_then_resume("mlflow", run_dir)
    assert memory == first  # the resumed session appended to the same run
    entry = memory["mlflow"]
    assert entry["tracking_uri"] == (run_dir / "mlruns").as_uri()

    client = mlflow_local.tracking.MlflowClient(tracking_uri=entry["tracking_uri"])
    run = client.get_run(entry["run_id"])
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "run"
    assert run.data.params["train.optimizer.lr"] == "0.002"
    assert run.data.params["train.milestones"] == "[3, 4]"

    bpc = _history(client, entry["run_id"], "train/bpc")
    # every step once: the resumed session skips 5 and 6, which the first one had logged
    assert [s for s, _ in bpc] == list(range(1, 9))
    expected = [train(s)["bpc"] for s in range(1, 7)] + [train(s, session=1)["bpc"] for s in (7, 8)]
    assert [v for _, v in bpc] == pytest.approx(expected)
    assert _history(client, entry["run_id"], "valid/bpc") == [
        (4, pytest.approx(1.5)),
        (8, pytest.approx(1.6)),
    ]
    assert [s for s, _ in _history(client, entry["run_id"], "train/tokens_per_s")] == list(
        range(1, 9)
    )
    assert run.data.metrics["best_valid_bpc"] == pytest.approx(1.5)


def test_mlflow_crash_and_interrupt_statuses(mlflow_local, tmp_path, monkeypatch):
    store = tmp_path / "elsewhere"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.as_uri())
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "tests")
    statuses = {}
    for name, error in (("crash", RuntimeError("boom")), ("stop", KeyboardInterrupt())):
        run_dir = tmp_path / name
        run_dir.mkdir()
        with (
            pytest.raises(type(error)),
            open_trackers(["mlflow"], run_dir, CONFIG, resume=False) as sink,
        ):
            sink(train(1))
            raise error
        entry = read_memory(run_dir)["mlflow"]
        assert entry["tracking_uri"] == store.as_uri()  # the user's store, not run_dir/mlruns
        assert not (run_dir / "mlruns").exists()
        client = mlflow_local.tracking.MlflowClient(tracking_uri=entry["tracking_uri"])
        run = client.get_run(entry["run_id"])
        assert client.get_experiment(run.info.experiment_id).name == "tests"
        statuses[name] = run.info.status
    assert statuses == {"crash": "FAILED", "stop": "KILLED"}

    # a resume goes back to the remembered store even when the environment changed
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    with open_trackers(["mlflow"], tmp_path / "crash", CONFIG, resume=True) as sink:
        sink({"kind": "resume", "step": 1, "changed": []})
        sink(train(2))
        sink(end(2))
    client = mlflow_local.tracking.MlflowClient(tracking_uri=store.as_uri())
    run = client.get_run(read_memory(tmp_path / "crash")["mlflow"]["run_id"])
    assert run.info.status == "FINISHED"
    assert [s for s, _ in _history(client, run.info.run_id, "train/bpc")] == [1, 2]


def test_a_tracker_failure_is_one_line_naming_the_tracker(tmp_path, monkeypatch):
    """A tracker's own exception (a full disk, an unreachable server) is not a traceback."""
    pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    sink = open_trackers(["tensorboard"], run_dir, CONFIG, resume=False)

    def broken(self, record):
        raise OSError("No space left on device\nmore detail")

    monkeypatch.setattr(type(sink.trackers[0]), "log", broken)
    with pytest.raises(LstmlabError) as err:
        sink(train(3))
    assert err.value.message == "the tensorboard logger failed at step 3: No space left on device"
    assert "writable" in err.value.hint
    sink.close("failed")  # finishing after the failure still works


# ---------------------------------------------------------------- with the real training loop


def test_fit_feeds_the_trackers_and_resume_continues_them(tiny_corpus, mlflow_local, tmp_path):
    """Real records from fit: 4 steps, then a resume to 8, into TensorBoard and MLflow."""
    pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")
    from lstmlab import runs
    from lstmlab.config import apply_overrides, validate
    from lstmlab.train import fit

    from support import TINY_RECIPE

    run_dir = tmp_path / "run"
    run_dir.mkdir()  # an empty folder is a fresh run's to claim
    for max_steps, resume in ((4, False), (8, True)):
        cfg = validate(
            apply_overrides(TINY_RECIPE, [f"train.max_steps={max_steps}", "train.log_every=1"])
        )
        with open_trackers(
            ["tensorboard", "mlflow"], run_dir, cfg.to_dict(), resume=resume
        ) as sink:
            fit(cfg, run_dir, resume=resume, on_event=sink)

    logged = [r for r in runs.read_metrics(run_dir) if r["kind"] == "train"]
    assert [r["step"] for r in logged] == list(range(1, 9))
    scalars = _scalars(run_dir / "tensorboard")
    assert [s for s, _ in scalars["train/bpc"]] == list(range(1, 9))
    assert [v for _, v in scalars["train/bpc"]] == pytest.approx([r["bpc"] for r in logged])

    entry = read_memory(run_dir)["mlflow"]
    client = mlflow_local.tracking.MlflowClient(tracking_uri=entry["tracking_uri"])
    run = client.get_run(entry["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["train.max_steps"] == "4"  # the recipe as first logged
    assert _history(client, entry["run_id"], "train/loss") == [
        (r["step"], pytest.approx(r["loss"])) for r in logged
    ]
    assert [s for s, _ in _history(client, entry["run_id"], "valid/bpc")] == [4, 8]


def test_recipe_loggers_name_exactly_the_registered_trackers():
    from typing import get_args

    from lstmlab.config import TrainConfig

    (inner,) = get_args(TrainConfig.model_fields["loggers"].annotation)[:1]
    assert set(get_args(inner)) == set(TRACKERS)


def test_cli_logger_option_trains_into_tensorboard(tmp_path, monkeypatch):
    pytest.importorskip("tensorboard")
    import numpy as np
    import yaml
    from typer.testing import CliRunner

    from lstmlab.cli.app import app
    from lstmlab.corpora.store import write_corpus
    from lstmlab.tokenizers import CharTokenizer

    from support import TINY_RECIPE, TINY_TEXT

    tok = CharTokenizer(sorted(set(TINY_TEXT)))
    ids = np.array(tok.encode(TINY_TEXT))
    write_corpus(
        tmp_path / "data",
        "tiny",
        tok,
        {"train": ids[:2000], "valid": ids[2000:2300], "test": ids[2300:]},
    )
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(TINY_RECIPE))
    run = tmp_path / "runs" / "tb"
    args = [
        "train",
        str(recipe),
        "--run-dir",
        str(run),
        "--logger",
        "tensorboard",
        "--set",
        "train.max_steps=4",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["loggers"] == ["tensorboard"]
    assert any((run / "tensorboard").rglob("events.out.tfevents.*"))
    other = ["train", str(recipe), "--run-dir", str(tmp_path / "runs" / "x")]
    missing = CliRunner().invoke(app, [*other, "--logger", "nope"])
    assert missing.exit_code == 2 and "train.loggers" in missing.output
