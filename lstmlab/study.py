"""Study folders of `lstmlab tune`: what they hold, who writes them, and their trials as rows.

runs/tune-<recipe>/study.json     what makes the folder a study: the recipe (as given, with
                                  its --set overrides), the resolved recipe, the sampler seed
runs/tune-<recipe>/study.db       Optuna's SQLite storage: every trial, its parameters,
                                  intermediate validation bpc (at tokens seen) and state
runs/tune-<recipe>/trial-0003/    trial 3: an ordinary run folder (eval, compare, sample)
runs/tune-<recipe>/best.yaml      the recipe with the best trial's values, rewritten after
                                  every trial
runs/tune-<recipe>/.lock          the process tuning the study (one writer, as for runs)

`claim_study_dir` gives a folder to one process: a new or empty folder becomes a
study; a folder with study.json is continued, and only with the recipe it was
started with; any other folder is refused, as are the working directory, its
parents and the data root. `read_trials` turns the storage into `TrialRow`s for
`lstmlab compare STUDY`, without training anything.

Optuna is an optional extra (`pip install 'lstmlab[tune]'`): `require_optuna`
imports it and turns its absence into a usage error naming that command.
"""

from __future__ import annotations

import csv
import io
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lstmlab import runs
from lstmlab.errors import UsageError
from lstmlab.files import atomic_write_text

STUDY_FILE = "study.json"
STORAGE_FILE = "study.db"
BEST_FILE = "best.yaml"
KIND = "lstmlab-study"
FORMAT_VERSION = 1
STUDY_NAME = "lstmlab"  # the one Optuna study inside study.db
INTERRUPTED = "interrupted"  # the `reason` of a trial stopped by Ctrl-C or a kill


def require_optuna():
    """The optuna module, or a UsageError naming the extra that installs it."""
    try:
        import optuna
    except ImportError:
        raise UsageError(
            "lstmlab tune needs the optuna package", hint="pip install 'lstmlab[tune]'"
        ) from None
    return optuna


def trial_dir(study_dir: Path, number: int) -> Path:
    return Path(study_dir) / f"trial-{number:04d}"


def storage_url(study_dir: Path) -> str:
    return f"sqlite:///{(Path(study_dir) / STORAGE_FILE).resolve()}"


def is_study_dir(path: Path | str) -> bool:
    """A folder holding a study.json (what `lstmlab tune` writes first)."""
    return (Path(path) / STUDY_FILE).is_file()


def read_study_file(study_dir: Path) -> dict:
    """study.json, checked to be an lstmlab study's."""
    path = Path(study_dir) / STUDY_FILE
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        record = None
    if not isinstance(record, dict) or record.get("kind") != KIND:
        raise UsageError(
            f"{path} is not an lstmlab study file; the folder is never used as a study",
            hint="name another folder with --study-dir",
        )
    if record.get("format_version") != FORMAT_VERSION:
        raise UsageError(
            f"{path} has format {record.get('format_version')!r}; this lstmlab reads {FORMAT_VERSION}",
            hint="use the lstmlab version that started the study, or another --study-dir",
        )
    return record


# ---------------------------------------------------------------- claiming a study folder


@dataclass
class StudyClaim:
    """A study folder held by this process: its record, and whether it was started now."""

    study_dir: Path
    record: dict
    lock: runs.RunLock
    fresh: bool


def claim_study_dir(
    study_dir: Path | str,
    *,
    recipe: str,
    source: dict,
    config: dict,
    seed: int | None,
    data_root: Path | None = None,
) -> StudyClaim:
    """Make `study_dir` this process's study (new, or continued with the same recipe).

    `source` is the recipe as written (with overrides), `config` the resolved one;
    a continued study must have been started with an equal `config`, and `seed`
    (None: the recorded one) must match the recorded sampler seed.
    """
    study_dir = Path(study_dir)
    continued = is_study_dir(study_dir)
    if not continued:
        runs.check_fresh_place(study_dir, data_root)
        if study_dir.exists() and (not study_dir.is_dir() or any(study_dir.iterdir())):
            raise UsageError(
                f"{study_dir} exists and is not an lstmlab study folder (no {STUDY_FILE}); "
                "it is never used as one",
                hint="name a new folder with --study-dir",
            )
        study_dir.mkdir(parents=True, exist_ok=True)
    lock = runs.lock_folder(study_dir, command="lstmlab tune")
    try:
        if continued:
            record = read_study_file(study_dir)
            _check_same_study(study_dir, record, config, seed)
        else:
            record = {
                "kind": KIND,
                "format_version": FORMAT_VERSION,
                "recipe": recipe,
                "source": source,
                "config": config,
                "seed": 0 if seed is None else seed,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
            atomic_write_text(study_dir / STUDY_FILE, json.dumps(record, indent=2) + "\n")
    except BaseException:
        lock.release()
        raise
    return StudyClaim(study_dir, record, lock, fresh=not continued)


def _check_same_study(study_dir: Path, record: dict, config: dict, seed: int | None) -> None:
    from lstmlab.resume import diff_keys

    diffs = diff_keys(record.get("config"), config, "")
    if diffs:
        raise UsageError(
            f"{study_dir} was started with another recipe; it differs at: {', '.join(diffs)}",
            hint="continue it with the same recipe and --set values, or name another --study-dir",
        )
    if seed is not None and seed != record.get("seed"):
        raise UsageError(
            f"{study_dir} was started with --seed {record.get('seed')}, not {seed}",
            hint="drop --seed to continue the study, or name another --study-dir",
        )


# ---------------------------------------------------------------- the best recipe


def substitute(source: dict, params: dict[str, Any]) -> dict:
    """The recipe `source` with each dotted path set to its value, and no `tune` block."""
    import copy

    data = copy.deepcopy(source)
    data.pop("tune", None)
    for path, value in params.items():
        node = data
        *parents, last = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return data


def write_best(study_dir: Path, record: dict, best: TrialRow, done: int) -> Path:
    """best.yaml: the study's recipe with the best trial's values, under a header saying whence."""
    searched = ", ".join(f"{k}={_value_text(v)}" for k, v in best.params.items())
    header = [
        f"# Best trial of the lstmlab tune study {study_dir} ({done} trials done):",
        f"# trial {best.number}, valid_bpc {best.valid_bpc:.4f} (run folder {best.run}).",
        f"# Recipe {record['recipe']} with {searched}; its tune block is left out.",
        f"# Written {time.strftime('%Y-%m-%d %H:%M')}; train it with `lstmlab train {study_dir / BEST_FILE}`.",
    ]
    body = yaml.safe_dump(substitute(record["source"], best.params), sort_keys=False)
    path = Path(study_dir) / BEST_FILE
    atomic_write_text(path, "\n".join(header) + "\n" + body)
    return path


# ---------------------------------------------------------------- trials as rows


@dataclass
class TrialRow:
    """One trial as `lstmlab compare STUDY` shows it."""

    number: int
    state: str  # complete, pruned, failed, interrupted or running
    params: dict[str, Any] = field(default_factory=dict)
    valid_bpc: float | None = None  # complete: the trial's best; pruned: its last validation
    tokens: int | None = None  # tokens seen at the last validation reported (pruned: when pruned)
    run: str | None = None  # the trial's run folder, when it has one
    reason: str | None = None  # why a trial failed
    best: bool = False


_STATES = {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed", "RUNNING": "running"}


def trial_row(trial, study_dir: Path, study_live: bool) -> TrialRow:
    """An Optuna FrozenTrial as a row (`study_live`: a process holds the study now)."""
    state = _STATES.get(trial.state.name, trial.state.name.lower())
    reason = trial.user_attrs.get("reason")
    if state == "running" and not study_live:
        state, reason = INTERRUPTED, "killed; its parameters run again when the study continues"
    elif state == "failed" and reason == INTERRUPTED:
        state, reason = INTERRUPTED, trial.user_attrs.get("retried_as")
    folder = trial_dir(study_dir, trial.number)
    value = trial.value if trial.value is not None and math.isfinite(trial.value) else None
    return TrialRow(
        number=trial.number,
        state=state,
        params=dict(trial.params),
        valid_bpc=value,
        tokens=max(trial.intermediate_values) if trial.intermediate_values else None,
        run=str(folder) if folder.is_dir() else None,
        reason=reason,
    )


def read_trials(study_dir: Path | str) -> list[TrialRow]:
    """Every trial of a study folder that started, in trial order, the best (lowest complete
    value) marked."""
    study_dir = Path(study_dir)
    read_study_file(study_dir)
    optuna = require_optuna()
    if not (study_dir / STORAGE_FILE).is_file():  # opening it would create it
        return []
    try:
        study = optuna.load_study(study_name=STUDY_NAME, storage=storage_url(study_dir))
    except KeyError:  # started, but no trial was asked yet
        return []
    live = runs.lock_holder(study_dir) is not None
    queued = optuna.trial.TrialState.WAITING  # parameters queued to run first: not trials yet
    trials = [t for t in study.get_trials(deepcopy=False) if t.state != queued]
    return mark_best([trial_row(t, study_dir, live) for t in trials])


def mark_best(rows: list[TrialRow]) -> list[TrialRow]:
    complete = [r for r in rows if r.state == "complete" and r.valid_bpc is not None]
    if complete:
        min(complete, key=lambda r: (r.valid_bpc, r.number)).best = True
    return rows


def param_names(rows: list[TrialRow]) -> list[str]:
    return list(dict.fromkeys(k for r in rows for k in r.params))


def _value_text(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def headers(rows: list[TrialRow]) -> list[str]:
    return ["trial", "state", *param_names(rows), "valid bpc", "tokens", "note"]


def text_cells(row: TrialRow, names: list[str]) -> list[str]:
    """The row as the table and markdown show it (the best trial's number carries a *)."""
    params = [_value_text(row.params[n]) if n in row.params else "–" for n in names]
    bpc = "–" if row.valid_bpc is None else f"{row.valid_bpc:.4f}"
    tokens = "–" if row.tokens is None else f"{row.tokens:,}"
    number = f"{row.number}*" if row.best else str(row.number)
    return [number, row.state, *params, bpc, tokens, row.reason or ""]


def render(rows: list[TrialRow], fmt: str) -> str:
    """markdown (best row bold), csv or json text of a study's trials."""
    names = param_names(rows)
    if fmt == "json":
        return json.dumps([asdict(r) for r in rows], indent=2) + "\n"
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["trial", "state", *names, "valid_bpc", "tokens", "best", "run", "reason"])
        for r in rows:
            writer.writerow(
                [r.number, r.state, *(r.params.get(n, "") for n in names)]
                + ["" if r.valid_bpc is None else r.valid_bpc, "" if r.tokens is None else r.tokens]
                + [r.best, r.run or "", r.reason or ""]
            )
        return buf.getvalue()
    if fmt == "markdown":
        head = headers(rows)
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
        for r in rows:
            cells = [c.replace("|", "\\|") for c in text_cells(r, names)]
            if r.best:
                cells = [f"**{c}**" if c else c for c in cells]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"
    raise UsageError(f"unknown format {fmt!r}", hint="use table, markdown, csv or json")


def trial_run_dirs(rows: list[TrialRow]) -> list[Path]:
    """The trials' run folders that exist and hold a run (for plots and `compare` of runs)."""
    return [Path(r.run) for r in rows if r.run and runs.is_run_dir(r.run)]


__all__ = [
    "BEST_FILE",
    "INTERRUPTED",
    "STORAGE_FILE",
    "STUDY_FILE",
    "StudyClaim",
    "TrialRow",
    "claim_study_dir",
    "is_study_dir",
    "read_study_file",
    "read_trials",
    "render",
    "require_optuna",
    "storage_url",
    "substitute",
    "trial_dir",
    "write_best",
]
