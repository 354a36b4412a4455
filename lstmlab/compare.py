"""Side-by-side comparison of training runs: run folders -> rows -> table, markdown, csv, json, plot.

A run folder (see `runs.py`) is read without loading its model: the resolved
recipe gives corpus, cell(s) and budget; `metrics.jsonl` gives the learning
curve (valid bpc against tokens seen and training seconds), tokens seen,
training time and the best validation; the checkpoint's `num_parameters` is
read through a memory map; `eval.json` gives the test bpc.

A run's state comes from its lock (`runs.py`): `running` while the lock's
process is live (on this host: its pid runs and is not this process; on
another host: the run wrote within STALE_S), `finished` when the last session
ended with an `end` record, `crashed` when a lock outlived its process (or
was marked failed, or is torn), `stopped` when there is neither lock nor `end`
(Ctrl-C / SIGTERM after saving, resumable). A resume drops the old `end`, so a
resumed run reads running while it trains and crashed after a kill.

Figures: bpc = nats / (ln 2 x characters); per-character perplexity = 2^bpc;
train tokens/s = tokens seen / seconds spent in training steps (validation
excluded).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import platform
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from lstmlab import runs
from lstmlab.errors import LstmlabError, UsageError

FORMATS = ("table", "markdown", "csv", "json")
STALE_S = runs.STALE_S  # a run on another host that wrote nothing for this long counts as crashed
is_run_dir = runs.is_run_dir


@dataclass
class RunRow:
    """One run, as every output format shows it (`curve` only goes to json and the plot)."""

    name: str
    path: str
    state: str
    corpus: str | None = None
    cells: str | None = None
    budget: str | None = None
    num_parameters: int | None = None
    tokens: int | None = None
    step: int | None = None  # the last step the run logged
    wall_s: float | None = None
    tokens_per_s: float | None = None
    best_valid_bpc: float | None = None
    best_step: int | None = None
    test_bpc: float | None = None
    test_step: int | None = None  # the step of the checkpoint eval.json's test bpc belongs to
    test_stale: bool = False  # that checkpoint is older than the run's best (table: bpc*)
    valid_perplexity: float | None = None
    test_perplexity: float | None = None
    stop_reason: str | None = None
    curve: list[dict] = field(default_factory=list)  # valid points: step, tokens, elapsed_s, bpc
    recipe_key: str | None = None  # the resolved recipe without its seed and name: one group
    seed: int | None = None

    @property
    def perplexity(self) -> float | None:
        """Per-character perplexity on test when evaluated, else at the best validation."""
        return self.test_perplexity if self.test_perplexity is not None else self.valid_perplexity


# ---------------------------------------------------------------- recipe facts


def cell_names(model: dict) -> str:
    """Every distinct cell `kind` in a model section, in order ("slstm+mlstm" for a mixed stack)."""
    kinds: list[str] = []

    def walk(node) -> None:
        if isinstance(node, dict):
            kind = node.get("kind")
            if isinstance(kind, str) and kind not in kinds:
                kinds.append(kind)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(model)
    return "+".join(kinds) or "?"


def budget_text(train: dict) -> str:
    """The budgets a train section sets, e.g. '2 min' or '500 epochs, 10,000 steps'."""
    parts = []
    if train.get("max_minutes"):
        parts.append(f"{train['max_minutes']:g} min")
    if train.get("max_epochs"):
        parts.append(f"{train['max_epochs']:g} epochs")
    if train.get("max_steps"):
        parts.append(f"{train['max_steps']:,} steps")
    if train.get("max_tokens"):
        parts.append(f"{train['max_tokens']:,} tokens")
    return ", ".join(parts) or "none"


# ---------------------------------------------------------------- reading runs


def find_runs(paths: Iterable[Path]) -> list[Path]:
    """Run folders named directly, and every run folder inside a parent folder (sorted)."""
    found: list[Path] = []
    for path in map(Path, paths):
        if not path.exists():
            raise UsageError(f"{path} does not exist", hint="pass run folders or their parent")
        if is_run_dir(path):
            found.append(path)
            continue
        children = sorted(p for p in path.iterdir() if is_run_dir(p)) if path.is_dir() else []
        if not children:
            raise UsageError(
                f"{path} is neither a run folder nor a folder of runs",
                hint="a run folder holds config.yaml, metrics.jsonl or checkpoints/ (written by `lstmlab train`)",
            )
        found.extend(children)
    return list(dict.fromkeys(found))


def _pid_alive(pid: int, started: float | None = None) -> bool:
    return runs.pid_alive(pid, started)


def run_state(run_dir: Path, records: Sequence[dict]) -> str:
    """running, finished, crashed or stopped (see the module docstring), from the lock and `records`."""
    holder = runs.lock_holder(run_dir)
    # the process reading the run is not training it (it reads after `fit` returned or raised)
    if holder is not None and (holder["host"], holder["pid"]) != (
        socket.gethostname(),
        os.getpid(),
    ):
        return "running"
    if any(r.get("kind") == "end" for r in records):
        return "finished"
    return "crashed" if runs.has_lock(run_dir) else "stopped"


def _read_num_parameters(run_dir: Path) -> int | None:
    """From best.pt or last.pt, memory-mapped so the weights are not read."""
    import torch

    for which in ("best", "last"):
        path = runs.checkpoint_path(run_dir, which)
        if not path.is_file():
            continue
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except Exception:  # torn or foreign file: try the other checkpoint
            continue
        if isinstance(payload, dict) and isinstance(payload.get("num_parameters"), int):
            return payload["num_parameters"]
    return None


def read_run(run_dir: Path, warn: Callable[[str], None] = lambda _msg: None) -> RunRow:
    """One run folder -> its row. An unreadable recipe raises; lesser damage is warned about."""
    run_dir = Path(run_dir)
    try:
        config = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LstmlabError(f"{run_dir}: no config.yaml") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise LstmlabError(
            f"{run_dir}: config.yaml is unreadable ({exc.__class__.__name__})"
        ) from None
    if not isinstance(config, dict) or not all(
        isinstance(config.get(k), dict) for k in ("data", "model", "train")
    ):
        raise LstmlabError(f"{run_dir}: config.yaml is not an lstmlab recipe")
    records = [r for r in runs.read_metrics(run_dir) if isinstance(r, dict)]
    metrics = run_dir / "metrics.jsonl"
    if not records and metrics.is_file() and metrics.stat().st_size > 0:
        warn(f"{metrics} has no readable record; the run is shown without its curve")
    row = RunRow(
        name=run_dir.name,
        path=str(run_dir),
        state=run_state(run_dir, records),
        corpus=config["data"].get("corpus"),
        cells=cell_names(config["model"]),
        budget=budget_text(config["train"]),
        num_parameters=_read_num_parameters(run_dir),
        recipe_key=recipe_key(config),
        seed=config.get("seed") if isinstance(config.get("seed"), int) else None,
    )
    timed = [r for r in records if isinstance(r.get("tokens"), int) and _num(r.get("elapsed_s"))]
    if timed:
        last = max(timed, key=lambda r: r["tokens"])
        row.tokens, row.wall_s = last["tokens"], float(last["elapsed_s"])
        row.step = last.get("step") if isinstance(last.get("step"), int) else None
        row.tokens_per_s = row.tokens / row.wall_s if row.wall_s > 0 else None
    row.curve = [
        {k: r.get(k) for k in ("step", "tokens", "elapsed_s", "bpc")}
        for r in records
        if r.get("kind") == "valid" and _num(r.get("bpc")) and math.isfinite(r["bpc"])
    ]
    if row.curve:
        best = min(row.curve, key=lambda p: p["bpc"])
        row.best_valid_bpc, row.best_step = float(best["bpc"]), best["step"]
        row.valid_perplexity = _pow2(row.best_valid_bpc)
    end = next((r for r in reversed(records) if r.get("kind") == "end"), None)
    row.stop_reason = end.get("reason") if end else None
    _read_eval(run_dir, row, warn)
    return row


def _num(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _read_eval(run_dir: Path, row: RunRow, warn: Callable[[str], None]) -> None:
    """Test bpc from eval.json and the step of the checkpoint it scored; stale if older than best."""
    path = run_dir / "eval.json"
    if not path.is_file():
        return
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
        splits = report["splits"] if isinstance(report, dict) else None
        if isinstance(splits, dict) and "test" not in splits:
            return  # evaluated on valid only
        bpc = float(splits["test"]["bpc"])
        step = report.get("step")
    except (OSError, UnicodeDecodeError, ValueError, TypeError, KeyError, AttributeError):
        warn(f"{path} is unreadable; test bpc left out (run `lstmlab eval {run_dir}` again)")
        return
    row.test_bpc, row.test_perplexity = bpc, _pow2(bpc)
    if isinstance(step, int) and not isinstance(step, bool):
        row.test_step = step
        row.test_stale = row.best_step is not None and step < row.best_step


def _pow2(bpc: float) -> float:
    """Per-character perplexity 2^bpc; inf for a diverged run's huge bpc instead of OverflowError."""
    try:
        return 2.0**bpc
    except OverflowError:
        return math.inf


class _TestBpc(float):
    """A test bpc that knows whether it is stale, so its table cell can carry the mark."""

    stale: bool = False


def _test_bpc(row: RunRow) -> float | None:
    if row.test_bpc is None:
        return None
    value = _TestBpc(row.test_bpc)
    value.stale = row.test_stale
    return value


def _test_bpc_text(value) -> str:
    if value is None:
        return "–"
    return f"{value:.4f}" + ("*" if getattr(value, "stale", False) else "")


def recipe_key(config: dict) -> str:
    """A digest of a resolved recipe without `seed` and `name`: runs of one recipe share it."""
    import hashlib

    rest = {k: v for k, v in config.items() if k not in ("seed", "name")}
    return hashlib.sha256(json.dumps(rest, sort_keys=True, default=str).encode()).hexdigest()[:12]


@dataclass
class GroupRow:
    """Runs of one recipe that differ only in their seed: mean, standard deviation and n."""

    name: str  # the first run's name without its -s<seed> suffix
    cells: str | None
    runs: list[str]
    seeds: list[int | None]
    valid_mean: float | None = None
    valid_sd: float | None = None
    test_mean: float | None = None
    test_sd: float | None = None
    unresolved: list[str] = field(default_factory=list)  # groups the seeds do not separate it from

    @property
    def n(self) -> int:
        return len(self.runs)


def _mean_sd(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def group_runs(rows: Sequence[RunRow]) -> list[GroupRow]:
    """Rows grouped by recipe (same config up to the seed), best mean valid bpc first.

    Two groups are marked unresolved from each other when their mean valid bpc differ by
    less than two standard errors of the difference (Welch), or when either has a single
    seed: the seeds do not show which is better.
    """
    by_key: dict[str, list[RunRow]] = {}
    for row in rows:
        by_key.setdefault(row.recipe_key or row.path, []).append(row)
    groups = []
    for members in by_key.values():
        members = sorted(members, key=lambda r: (r.seed is None, r.seed or 0, r.name))
        valid = [r.best_valid_bpc for r in members if r.best_valid_bpc is not None]
        test = [r.test_bpc for r in members if r.test_bpc is not None]
        group = GroupRow(
            name=_group_name(members[0].name),
            cells=members[0].cells,
            runs=[r.name for r in members],
            seeds=[r.seed for r in members],
        )
        group.valid_mean, group.valid_sd = _mean_sd(valid)
        group.test_mean, group.test_sd = _mean_sd(test)
        groups.append(group)
    groups.sort(key=lambda g: (g.valid_mean is None, g.valid_mean or 0.0, g.name))
    for a in groups:
        a.unresolved = [b.name for b in groups if b is not a and not _resolved(a, b)]
    return groups


def _group_name(name: str) -> str:
    import re

    return re.sub(r"-s\d+$", "", name)


def _resolved(a: GroupRow, b: GroupRow) -> bool:
    if a.valid_mean is None or b.valid_mean is None or a.valid_sd is None or b.valid_sd is None:
        return False
    stderr = math.sqrt(a.valid_sd**2 / a.n + b.valid_sd**2 / b.n)
    return abs(a.valid_mean - b.valid_mean) > 2 * stderr


def collect(paths: Iterable[Path], *, allow_mixed: bool = False) -> tuple[list[RunRow], list[str]]:
    """Rows for every run under `paths`, sorted by best valid bpc (runs without one last)."""
    warnings: list[str] = []
    rows = []
    for run_dir in find_runs(paths):
        try:
            rows.append(read_run(run_dir, warnings.append))
        except LstmlabError as exc:
            warnings.append(f"skipped {exc.message}")
    if not rows:
        raise UsageError("no readable run to compare", hint="; ".join(warnings) or None)
    corpora = sorted({r.corpus or "?" for r in rows})
    if len(corpora) > 1 and not allow_mixed:
        raise UsageError(
            f"the runs were trained on different corpora ({', '.join(corpora)}); bpc is not comparable across them",
            hint="compare runs of one corpus, or pass --allow-mixed",
        )
    rows.sort(key=lambda r: (r.best_valid_bpc is None, r.best_valid_bpc or 0.0, r.name))
    return rows, warnings


# ---------------------------------------------------------------- formats


def _int(v) -> str:
    return "–" if v is None else f"{v:,}"


def _fixed(digits: int) -> Callable:
    return lambda v: "–" if v is None else f"{v:.{digits}f}"


# (header, row -> raw value, raw value -> text); raw values go to csv and json.
COLUMNS: tuple[tuple[str, str, Callable[[RunRow], object], Callable[[object], str]], ...] = (
    ("run", "name", lambda r: r.name, str),
    ("state", "state", lambda r: r.state, str),
    ("corpus", "corpus", lambda r: r.corpus, lambda v: v or "–"),
    ("cell", "cells", lambda r: r.cells, lambda v: v or "–"),
    ("params", "num_parameters", lambda r: r.num_parameters, _int),
    ("tokens", "tokens", lambda r: r.tokens, _int),
    ("train s", "wall_s", lambda r: r.wall_s, _fixed(1)),
    (
        "tok/s",
        "tokens_per_s",
        lambda r: r.tokens_per_s,
        lambda v: _int(None if v is None else round(v)),
    ),
    ("valid bpc", "best_valid_bpc", lambda r: r.best_valid_bpc, _fixed(4)),
    ("at step", "best_step", lambda r: r.best_step, lambda v: "–" if v is None else str(v)),
    ("test bpc", "test_bpc", _test_bpc, _test_bpc_text),  # * = an older checkpoint than best
    ("ppl/char", "perplexity", lambda r: r.perplexity, _fixed(3)),
)


def text_cells(row: RunRow) -> list[str]:
    """The row as the table and markdown show it."""
    return [fmt(get(row)) for _h, _k, get, fmt in COLUMNS]


TEXT_HEADERS = frozenset({"run", "state", "corpus", "cell"})  # left-aligned; the rest are numbers


def headers() -> list[str]:
    return [h for h, *_ in COLUMNS]


def to_markdown(rows: Sequence[RunRow]) -> str:
    """A GitHub table; the best run (first row, when it has a valid bpc) in bold."""
    lines = ["| " + " | ".join(headers()) + " |", "|" + "|".join("---" for _ in COLUMNS) + "|"]
    for index, row in enumerate(rows):
        cells = [c.replace("|", "\\|") for c in text_cells(row)]
        if index == 0 and row.best_valid_bpc is not None:
            cells = [f"**{c}**" for c in cells]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def to_csv(rows: Sequence[RunRow]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    extras = ["stop_reason", "budget", "path", "test_step", "test_stale"]
    writer.writerow([key for _h, key, *_ in COLUMNS] + extras)
    for row in rows:
        values = ["" if (v := get(row)) is None else v for _h, _k, get, _f in COLUMNS]
        test_step = "" if row.test_step is None else row.test_step
        writer.writerow(
            values + [row.stop_reason or "", row.budget or "", row.path, test_step, row.test_stale]
        )
    return buf.getvalue()


def to_json(rows: Sequence[RunRow]) -> str:
    return json.dumps([{**asdict(r), "perplexity": r.perplexity} for r in rows], indent=2) + "\n"


def render(rows: Sequence[RunRow], fmt: str) -> str:
    """markdown, csv or json text (the rich table is drawn by the CLI from `text_cells`)."""
    writers = {"markdown": to_markdown, "csv": to_csv, "json": to_json}
    if fmt not in writers:
        raise UsageError(f"unknown format {fmt!r}", hint=f"use one of {', '.join(FORMATS)}")
    return writers[fmt](rows)


def context_note(rows: Sequence[RunRow]) -> str:
    """One line for a results page: date, this machine, corpus and budget of the runs."""
    import torch

    from lstmlab.device import cpu_model

    if torch.cuda.is_available():
        device = torch.cuda.get_device_name(0)
    else:
        device = f"CPU {cpu_model()}, {os.cpu_count()} cores"
    corpora = ", ".join(sorted({r.corpus or "?" for r in rows}))
    budgets = ", ".join(sorted({r.budget or "?" for r in rows}))
    return (
        f"Measured {time.strftime('%Y-%m-%d')} on {device} ({platform.system()} {platform.machine()}, "
        f"torch {torch.__version__}); corpus {corpora}; training budget per run: {budgets}."
    )


# ---------------------------------------------------------------- plot


def curve_label(row: RunRow, rows: Sequence[RunRow]) -> str:
    """The cell name, or cell + run name when several runs share a cell."""
    shared = sum(r.cells == row.cells for r in rows) > 1
    return f"{row.cells} ({row.name})" if shared else str(row.cells)


def make_figure(rows: Sequence[RunRow]):
    """Valid bpc against tokens seen and against training minutes; one line per run with a curve."""
    from matplotlib.figure import Figure  # no pyplot: no global backend or figure registry

    plotted = [r for r in rows if r.curve]
    if not plotted:
        raise UsageError(
            "no run has a validation point to plot",
            hint="let runs reach train.eval_every or their budget first",
        )
    fig = Figure(figsize=(10, 4), dpi=100, layout="constrained")
    by_tokens, by_time = fig.subplots(1, 2, sharey=True)
    for row in plotted:
        label = curve_label(row, plotted)
        tokens = [p["tokens"] / 1e6 for p in row.curve]  # millions
        minutes = [p["elapsed_s"] / 60 for p in row.curve]
        bpc = [p["bpc"] for p in row.curve]
        (line,) = by_tokens.plot(tokens, bpc, marker=".", label=label)
        by_time.plot(minutes, bpc, marker=".", label=label, color=line.get_color())
    by_tokens.set_xlabel("training tokens seen (millions)")
    by_time.set_xlabel("training time (minutes)")
    by_tokens.set_ylabel("validation bits per character")
    for ax in (by_tokens, by_time):
        ax.grid(True, alpha=0.3)
    by_time.legend(title="cell", fontsize="small")
    corpora = ", ".join(sorted({r.corpus or "?" for r in plotted}))
    fig.suptitle(f"Learning curves on {corpora}")
    return fig


def save_plot(rows: Sequence[RunRow], path: Path) -> Path:
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise UsageError(f"--plot {path}: the plot is written as PNG", hint="name it *.png")
    path.parent.mkdir(parents=True, exist_ok=True)
    make_figure(rows).savefig(path, format="png")
    return path


__all__ = [
    "GroupRow",
    "group_runs",
    "recipe_key",
    "COLUMNS",
    "FORMATS",
    "RunRow",
    "budget_text",
    "cell_names",
    "collect",
    "context_note",
    "find_runs",
    "make_figure",
    "read_run",
    "render",
    "save_plot",
    "text_cells",
    "to_csv",
    "to_json",
    "to_markdown",
]
