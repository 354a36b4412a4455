"""Experiment trackers fed from training's event hook: TensorBoard, Weights & Biases, MLflow.

`open_trackers(["tensorboard", "mlflow"], run_dir, cfg.to_dict(), resume=...)` returns a
sink to pass as `fit(..., on_event=sink)`. The sink forwards every metrics record to each
tracker: `train` records as train/loss, train/bpc, train/lr, train/tokens_per_s at their
step, `valid` records as valid/bpc and valid/loss, and the `end` record as a summary
(best_valid_bpc, best_step) before finishing the tracker run. `sink.close(status)` (or
leaving `with open_trackers(...) as sink:`) finishes a run that training left early as
failed or killed.

Each tracker is an optional extra: the package is imported by `open_trackers`, so a missing
one stops the command before training with the pip line that installs it, and never at
import time of this module. Files go inside the run folder unless the user points the
tracker elsewhere (WANDB_DIR, MLFLOW_TRACKING_URI):

    run_dir/tensorboard/     event files (one log_dir per run, shared by resumed sessions)
    run_dir/wandb/           wandb's local run folders (offline unless WANDB_MODE says online)
    run_dir/mlruns/          MLflow's local file store (MLflow 3 wants an opt-in for it,
                             MLFLOW_ALLOW_FILE_STORE, which this module sets unless the
                             user did; a sqlite:// MLFLOW_TRACKING_URI needs full mlflow)
    run_dir/trackers.json    which tracker run this run folder writes to

trackers.json is what makes `--resume` continue the same tracker run rather than start a
new one: the wandb run id, the MLflow run id and tracking URI, the TensorBoard log_dir.

The tracker runs are created on the first persisted record, not in `open_trackers`: by then
`fit` has claimed the run folder (a fresh run refuses a non-empty folder), and a resumed run
has announced the step it restarts from, which TensorBoard needs to hide the redone steps.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import MappingProxyType
from typing import Any, Protocol

from lstmlab.errors import LstmlabError, UsageError
from lstmlab.files import atomic_write_text

MEMORY = "trackers.json"

# record kind -> the fields each tracker receives, as "<kind>/<field>" at the record's step
METRICS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "train": ("loss", "bpc", "lr", "tokens_per_s"),
        "valid": ("bpc", "loss"),
    }
)
# records written to metrics.jsonl; the others ("warning", "signal") are notices
PERSISTED = frozenset({"train", "valid", "skip", "resume", "end"})
STATUSES = ("finished", "failed", "killed")


class Tracker(Protocol):
    """One tracker run: started once per training session, fed records, then finished."""

    name: str
    hint: str  # what to check when the tracker fails while training runs

    def require(self) -> None:
        """Import the tracker's package, or raise UsageError naming the pip command."""

    def start(self, run_dir: Path, config: Mapping[str, Any], resume: bool) -> None:
        """Open (resume=True: reopen, when the run folder remembers one) the tracker run."""

    def log(self, record: dict) -> None:
        """Forward one training record."""

    def finish(self, status: str) -> None:
        """Close the tracker run as finished, failed or killed."""


# ---------------------------------------------------------------- shared helpers


def _import(module: str, tracker: str, extra: str):
    """Import an optional package; a missing one is a usage error naming its extra."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise UsageError(
            f"the {tracker} logger needs the {extra} package",
            hint=f"pip install 'lstmlab[{extra}]'",
        ) from exc


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """The recipe as `train.optimizer.lr`-style keys with scalar values.

    Lists and None become JSON text, since TensorBoard's hparams and MLflow's params take
    only scalars (and MLflow only strings).
    """
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, name + "."))
        elif isinstance(value, bool | int | float | str):
            flat[name] = value
        else:
            flat[name] = json.dumps(value)
    return flat


def metrics_of(record: Mapping[str, Any]) -> dict[str, float]:
    """The tracked figures of one record, keyed `train/loss` etc.; empty for other kinds."""
    kind = record.get("kind")
    fields = METRICS.get(kind, ())
    return {
        f"{kind}/{field}": float(record[field])
        for field in fields
        if isinstance(record.get(field), int | float)
    }


def summary_of(record: Mapping[str, Any]) -> dict[str, float]:
    """An end record's summary; an infinite best (no validation ran) is left out."""
    summary = {}
    for key in ("best_valid_bpc", "best_step"):
        value = record.get(key)
        if isinstance(value, int | float) and math.isfinite(value):
            summary[key] = value
    return summary


def read_memory(run_dir: Path) -> dict[str, dict]:
    """What run_dir/trackers.json remembers, per tracker; {} when there is none."""
    path = Path(run_dir) / MEMORY
    try:
        memory = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    return memory if isinstance(memory, dict) else {}


def remember(run_dir: Path, name: str, entry: Mapping[str, Any]) -> None:
    """Record one tracker's run in trackers.json, keeping the others' entries."""
    path = Path(run_dir) / MEMORY
    memory = read_memory(run_dir)
    memory[name] = dict(entry)
    atomic_write_text(path, json.dumps(memory, indent=2) + "\n")  # never half a file


def _remembered(run_dir: Path, name: str, resume: bool) -> dict | None:
    """The entry to continue: only when resuming, and only if the folder has one."""
    return read_memory(run_dir).get(name) if resume else None


# ---------------------------------------------------------------- TensorBoard


class TensorBoardTracker:
    """Scalars in run_dir/tensorboard, written by torch's SummaryWriter.

    A resumed session reopens the same log_dir with purge_step just after the checkpoint's
    step, so TensorBoard hides what the crashed session logged past it and the redone
    steps appear once.
    """

    name = "tensorboard"
    hint = "check that the run folder is writable and has free space"

    def __init__(self) -> None:
        self._writer, self._step = None, 0

    def require(self) -> None:
        _import("tensorboard", self.name, "tensorboard")
        self._tb = _import("torch.utils.tensorboard", self.name, "tensorboard")

    def start(self, run_dir: Path, config: Mapping[str, Any], resume: bool) -> None:
        known = _remembered(run_dir, self.name, resume)
        self._log_dir = Path(known["log_dir"]) if known else Path(run_dir) / "tensorboard"
        self._hparams = None if known else flatten(config)  # logged once per tracker run
        remember(run_dir, self.name, {"log_dir": str(self._log_dir)})

    def _open(self, purge_step: int | None) -> None:
        self._writer = self._tb.SummaryWriter(str(self._log_dir), purge_step=purge_step)
        if self._hparams is not None:
            # hparams go into the run's own log_dir (add_hparams would make a sub-run)
            from torch.utils.tensorboard.summary import hparams

            for summary in hparams(self._hparams, {"valid/bpc": math.nan}):
                self._writer.file_writer.add_summary(summary)

    def log(self, record: dict) -> None:
        if self._writer is None:
            resumed = record.get("kind") == "resume"
            self._open(record["step"] + 1 if resumed else None)
        self._step = record["step"]
        for key, value in metrics_of(record).items():
            self._writer.add_scalar(key, value, global_step=record["step"])
        if record.get("kind") == "end":
            for key, value in summary_of(record).items():
                self._writer.add_scalar(f"summary/{key}", value, global_step=record["step"])

    def finish(self, status: str) -> None:
        if self._writer is not None:
            self._writer.add_text("status", status, global_step=self._step)
            self._writer.close()


# ---------------------------------------------------------------- Weights & Biases


class WandbTracker:
    """A wandb run; offline (files under run_dir/wandb, `wandb sync` later) unless
    WANDB_MODE is set, e.g. WANDB_MODE=online after `wandb login`."""

    name = "wandb"
    hint = "run `wandb login` for WANDB_MODE=online, or unset WANDB_MODE to log offline"
    _EXIT_CODES = MappingProxyType({"finished": 0, "failed": 1, "killed": 1})

    def __init__(self) -> None:
        self._run = None

    def require(self) -> None:
        self._wandb = _import("wandb", self.name, "wandb")

    def start(self, run_dir: Path, config: Mapping[str, Any], resume: bool) -> None:
        wandb, known = self._wandb, _remembered(run_dir, self.name, resume)
        directory = os.environ.get("WANDB_DIR") or str(run_dir)
        self._run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", "lstmlab"),
            name=Path(run_dir).name,
            dir=directory,
            mode=os.environ.get("WANDB_MODE") or "offline",
            id=known["id"] if known else None,
            resume="allow" if known else None,
            config=None if known else flatten(config),  # logged once per tracker run
            # the CLI owns the terminal: no stdout capture, no banners
            settings=wandb.Settings(console="off", silent=True),
        )
        remember(run_dir, self.name, {"id": self._run.id, "project": self._run.project})

    def log(self, record: dict) -> None:
        metrics = metrics_of(record)
        if metrics:
            self._run.log(metrics, step=record["step"])
        if record.get("kind") == "end":
            self._run.summary.update(summary_of(record))

    def finish(self, status: str) -> None:
        if self._run is not None:
            self._run.finish(exit_code=self._EXIT_CODES[status])
            self._run = None


# ---------------------------------------------------------------- MLflow


class MLflowTracker:
    """An MLflow run in a local file store under run_dir/mlruns, or MLFLOW_TRACKING_URI.

    MLflow keeps every logged point, so a resumed session skips the steps the crashed
    session had already logged for a metric (the redone steps give the same figures).
    """

    name = "mlflow"
    hint = "check MLFLOW_TRACKING_URI (or the tracking_uri in the run folder's trackers.json)"
    _STATUSES = MappingProxyType({"finished": "FINISHED", "failed": "FAILED", "killed": "KILLED"})

    def __init__(self) -> None:
        self._run_id = None

    def require(self) -> None:
        self._mlflow = _import("mlflow", self.name, "mlflow")

    def start(self, run_dir: Path, config: Mapping[str, Any], resume: bool) -> None:
        mlflow, known = self._mlflow, _remembered(run_dir, self.name, resume)
        uri = (
            known["tracking_uri"]
            if known
            else os.environ.get("MLFLOW_TRACKING_URI") or (Path(run_dir) / "mlruns").as_uri()
        )
        if uri.startswith("file:"):
            # MLflow 3 puts the file store in maintenance mode behind this opt-in; it is the
            # store that needs no database package (mlflow-skinny lacks SQLAlchemy)
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self._client = client = mlflow.tracking.MlflowClient(tracking_uri=uri)
        self._last_step: dict[str, int] = {}
        if known:
            self._run_id = known["run_id"]
            client.update_run(self._run_id, status="RUNNING")
            for key in client.get_run(self._run_id).data.metrics:
                history = client.get_metric_history(self._run_id, key)
                self._last_step[key] = max(point.step for point in history)
        else:
            name = os.environ.get("MLFLOW_EXPERIMENT_NAME", "lstmlab")
            experiment = client.get_experiment_by_name(name)
            experiment_id = (
                experiment.experiment_id if experiment else client.create_experiment(name)
            )
            run = client.create_run(experiment_id, run_name=Path(run_dir).name)
            self._run_id = run.info.run_id
            params = [mlflow.entities.Param(k, str(v)) for k, v in flatten(config).items()]
            for i in range(0, len(params), 100):  # log_batch takes at most 100 params
                client.log_batch(self._run_id, params=params[i : i + 100])
        remember(run_dir, self.name, {"run_id": self._run_id, "tracking_uri": uri})

    def log(self, record: dict) -> None:
        step, now = record["step"], int(time.time() * 1000)
        points = [
            self._mlflow.entities.Metric(key, value, now, step)
            for key, value in metrics_of(record).items()
            if step > self._last_step.get(key, -1)
        ]
        if record.get("kind") == "end":
            points += [
                self._mlflow.entities.Metric(key, float(value), now, step)
                for key, value in summary_of(record).items()
            ]
        if points:
            self._client.log_batch(self._run_id, metrics=points)

    def finish(self, status: str) -> None:
        if self._run_id is not None:
            self._client.set_terminated(self._run_id, status=self._STATUSES[status])
            self._run_id = None


# ---------------------------------------------------------------- registry and sink

TRACKERS: Mapping[str, Callable[[], Tracker]] = MappingProxyType(
    {
        "tensorboard": TensorBoardTracker,
        "wandb": WandbTracker,
        "mlflow": MLflowTracker,
    }
)


def status_of(exc: BaseException | None) -> str:
    """How training ended: no exception, an interrupt (Ctrl-C, SIGTERM), or a failure."""
    if exc is None:
        return "finished"
    if isinstance(exc, KeyboardInterrupt) or getattr(exc, "exit_code", 0) >= 128:
        return "killed"  # TrainingInterrupted carries 128 + the signal number
    return "failed"


@contextmanager
def _reported(tracker: Tracker, what: str):
    """A tracker's own exception becomes a one-line error instead of a traceback."""
    try:
        yield
    except LstmlabError:
        raise
    except Exception as exc:
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise LstmlabError(f"the {tracker.name} logger {what}: {detail}", tracker.hint) from exc


class TrackerSink:
    """The `on_event` callable that feeds every tracker; finish it with `close(status)`."""

    def __init__(
        self, trackers: list[Tracker], run_dir: Path, config: Mapping[str, Any], resume: bool
    ) -> None:
        self.trackers = trackers
        self._run_dir, self._config, self._resume = Path(run_dir), config, resume
        self._started = self._closed = False

    def __call__(self, record: dict) -> None:
        if self._closed or record.get("kind") not in PERSISTED:
            return  # warnings and signal notices are for the terminal, not the trackers
        if not self._started:
            self._started = True
            for tracker in self.trackers:
                with _reported(tracker, "could not start"):
                    tracker.start(self._run_dir, self._config, self._resume)
        for tracker in self.trackers:
            with _reported(tracker, f"failed at step {record.get('step')}"):
                tracker.log(record)
        if record["kind"] == "end":
            self.close("finished")

    def close(self, status: str = "finished") -> None:
        """Finish every started tracker run; repeated calls do nothing.

        On a failure path a tracker that cannot finish must not hide the training error, so
        its own error is raised only when the status is "finished".
        """
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, not {status!r}")
        if self._closed:
            return
        self._closed = True
        if not self._started:
            return
        first_error = None
        for tracker in self.trackers:
            try:
                with _reported(tracker, "could not finish"):
                    tracker.finish(status)
            except LstmlabError as exc:
                first_error = first_error or exc
        if first_error is not None and status == "finished":
            raise first_error

    def __enter__(self) -> TrackerSink:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(status_of(exc))


def open_trackers(
    names: Iterable[str], run_dir: Path, config: Mapping[str, Any], *, resume: bool
) -> TrackerSink:
    """A sink feeding the named trackers; their packages are imported now, so a missing
    extra or an unknown name fails before training starts."""
    trackers = []
    for name in dict.fromkeys(names):  # a name given twice is one tracker
        if name not in TRACKERS:
            raise UsageError(
                f"unknown logger {name!r}", hint=f"choose from {', '.join(sorted(TRACKERS))}"
            )
        tracker = TRACKERS[name]()
        tracker.require()
        trackers.append(tracker)
    return TrackerSink(trackers, run_dir, config, resume)
