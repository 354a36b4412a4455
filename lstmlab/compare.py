"""Side-by-side comparison of training runs: run folders -> rows -> table, markdown, csv, json
(the learning-curve plot of those rows is `plot.py`).

A run folder (see `runs.py`) is read without loading its model: the resolved
recipe gives corpus, cell(s) and budget; `metrics.jsonl` gives the learning
curve (valid bpc against tokens seen and training seconds), tokens seen,
training time and the best validation; the checkpoint's `num_parameters` is
read through a memory map; `eval.json` gives the test bpc.

A run's state comes from its lock (`runs.py`): `running` while the lock's
process is live (on this host: its pid runs and is not this process; on
another host: the run wrote within STALE_S), `finished` when the last session
ended with an `end` record, `failed` when training ended on an error (its lock
is left marked with it, which the row's `stop_reason` carries), `crashed` when
a lock outlived its process (or is torn), `stopped` when there is neither lock nor `end`
(Ctrl-C / SIGTERM after saving, resumable). A resume drops the old `end`, so a
resumed run reads running while it trains and crashed after a kill.

Figures: bpc = nats / (ln 2 x characters); per-character perplexity = 2^bpc;
train tokens/s = tokens seen / seconds spent in training steps (validation
excluded).

Budgets: "final" figures are each run's own (best validation within its budget,
test bpc of that checkpoint); when budgets differ they compare unequal training.
So every run is also read at two common points (`curves.py`): equal tokens, the
most tokens every compared run validated at (the smallest of their last
validations), and equal time, the same in step time (training steps only, as
`train.max_minutes` counts); each run's valid bpc there is interpolated
linearly between the validations around it.
"""

from __future__ import annotations

import contextlib
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

from lstmlab import curves, runs
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
    equal_tokens: int | None = None  # the common points of the comparison (`equal_budgets`)
    equal_step_s: float | None = None
    valid_at_tokens: float | None = None  # valid bpc on the curve at those points
    valid_at_time: float | None = None

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
    """running, finished, failed, crashed or stopped (see the module docstring), from the lock
    and `records`."""
    holder = runs.lock_holder(run_dir)
    # the process reading the run is not training it (it reads after `fit` returned or raised)
    if holder is not None and (holder["host"], holder["pid"]) != (
        socket.gethostname(),
        os.getpid(),
    ):
        return "running"
    if any(r.get("kind") == "end" for r in records):
        return "finished"
    if not runs.has_lock(run_dir):
        return "stopped"
    return "failed" if runs.failure(run_dir) else "crashed"


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
    if row.state == "failed":
        row.stop_reason = runs.failure(run_dir)
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
    """A digest of a resolved recipe without `seed` and `name`: runs of one recipe share it.

    Fields added to the recipe schema after a run was written count at their defaults (as
    its config.yaml loads), so an older run still groups with newer runs of its recipe.
    """
    import hashlib

    from lstmlab.config import validate

    with contextlib.suppress(LstmlabError):  # a recipe this version refuses is keyed as written
        config = validate(config).to_dict()
    rest = {k: v for k, v in config.items() if k not in ("seed", "name")}
    return hashlib.sha256(json.dumps(rest, sort_keys=True, default=str).encode()).hexdigest()[:12]


def equal_budgets(rows: Sequence[RunRow]) -> None:
    """Set every row's common points and its valid bpc there (see the module docstring)."""
    by_tokens = [curves.points(r.curve, "tokens") for r in rows]
    by_time = [curves.points(r.curve, "elapsed_s") for r in rows]
    at_tokens, at_time = curves.common_point(by_tokens), curves.common_point(by_time)
    for row, tokens, seconds in zip(rows, by_tokens, by_time):
        row.equal_tokens = None if at_tokens is None else int(at_tokens)
        row.equal_step_s = at_time
        row.valid_at_tokens = None if at_tokens is None else curves.value_at(tokens, at_tokens)
        row.valid_at_time = None if at_time is None else curves.value_at(seconds, at_time)


def same_budget(rows: Sequence[RunRow]) -> bool:
    """Every run trained under one budget and finished it: their final figures compare as they are."""
    return len({r.budget for r in rows}) == 1 and all(r.state == "finished" for r in rows)


def budget_note(rows: Sequence[RunRow]) -> str:
    """One line naming the budget each bpc column belongs to and the common points."""
    first = rows[0] if rows else RunRow(name="", path="", state="")
    tokens = "–" if first.equal_tokens is None else f"{first.equal_tokens:,} tokens"
    seconds = "–" if first.equal_step_s is None else f"{first.equal_step_s:.1f} s of step time"
    return (
        "final: each run's own budget (best validation); "
        f"@tokens: valid bpc at {tokens}, @time: at {seconds} (training steps only, as "
        "train.max_minutes counts), the most every run validated at; read by linear "
        "interpolation between the validations around the point (– where a run has none before it)"
    )


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
    at_tokens_mean: float | None = None
    at_tokens_sd: float | None = None
    at_time_mean: float | None = None
    at_time_sd: float | None = None
    judged_on: str = "final"  # the figure `unresolved` compares: "final" or "@tokens"
    unresolved: list[str] = field(default_factory=list)  # groups the seeds do not separate it from
    judged_n: int = 0  # how many runs have the judged figure

    @property
    def n(self) -> int:
        return len(self.runs)

    @property
    def judged(self) -> tuple[float | None, float | None]:
        """Mean and sd of the figure the resolution is judged on."""
        if self.judged_on == "final":
            return self.valid_mean, self.valid_sd
        return self.at_tokens_mean, self.at_tokens_sd


def group_runs(rows: Sequence[RunRow]) -> list[GroupRow]:
    """Rows grouped by recipe (same config up to the seed), best judged mean first.

    The judged figure is the final valid bpc when every run trained under the same
    budget and finished it; otherwise the valid bpc at equal tokens, which holds the
    data seen fixed (the equal-time figure also depends on the machine and its load).
    Two groups are marked unresolved from each other when their judged means differ by
    less than two standard errors of the difference (Welch), or when either has a single
    seed: the seeds do not show which is better.
    """
    judged_on = "final" if same_budget(rows) else "@tokens"
    groups = [_group(members, judged_on) for members in by_recipe(rows)]
    groups.sort(key=lambda g: (g.judged[0] is None, g.judged[0] or 0.0, g.name))
    for a in groups:
        a.unresolved = [b.name for b in groups if b is not a and not _resolved(a, b)]
    return groups


def by_recipe(rows: Sequence[RunRow]) -> list[list[RunRow]]:
    """Rows of one recipe (same config up to the seed) together, in first-seen order."""
    by_key: dict[str, list[RunRow]] = {}
    for row in rows:
        by_key.setdefault(row.recipe_key or row.path, []).append(row)
    return list(by_key.values())


def _group(members: list[RunRow], judged_on: str) -> GroupRow:
    members = sorted(members, key=lambda r: (r.seed is None, r.seed or 0, r.name))
    group = GroupRow(
        name=group_name(members[0].name),
        cells=members[0].cells,
        runs=[r.name for r in members],
        seeds=[r.seed for r in members],
        judged_on=judged_on,
    )

    def values(attr: str) -> list[float]:
        return [v for r in members if (v := getattr(r, attr)) is not None]

    group.valid_mean, group.valid_sd = curves.mean_sd(values("best_valid_bpc"))
    group.test_mean, group.test_sd = curves.mean_sd(values("test_bpc"))
    group.at_tokens_mean, group.at_tokens_sd = curves.mean_sd(values("valid_at_tokens"))
    group.at_time_mean, group.at_time_sd = curves.mean_sd(values("valid_at_time"))
    judged = "best_valid_bpc" if judged_on == "final" else "valid_at_tokens"
    group.judged_n = len(values(judged))
    return group


def group_name(name: str) -> str:
    """A run's name without its -s<seed> suffix: the name of its recipe group."""
    import re

    return re.sub(r"-s\d+$", "", name)


def _resolved(a: GroupRow, b: GroupRow) -> bool:
    (a_mean, a_sd), (b_mean, b_sd) = a.judged, b.judged
    if a_mean is None or b_mean is None or a_sd is None or b_sd is None:
        return False
    stderr = math.sqrt(a_sd**2 / a.judged_n + b_sd**2 / b.judged_n)
    return abs(a_mean - b_mean) > 2 * stderr


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
    equal_budgets(rows)
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
    ("valid final", "best_valid_bpc", lambda r: r.best_valid_bpc, _fixed(4)),
    ("at step", "best_step", lambda r: r.best_step, lambda v: "–" if v is None else str(v)),
    ("valid @tokens", "valid_at_tokens", lambda r: r.valid_at_tokens, _fixed(4)),
    ("valid @time", "valid_at_time", lambda r: r.valid_at_time, _fixed(4)),
    ("test final", "test_bpc", _test_bpc, _test_bpc_text),  # * = an older checkpoint than best
    ("ppl/char", "perplexity", lambda r: r.perplexity, _fixed(3)),
)


GROUP_HEADERS = (
    "recipe",
    "cell",
    "n",
    "valid final",
    "valid @tokens",
    "valid @time",
    "test final",
    "not resolved from",
)


def seed_groups(rows: Sequence[RunRow]) -> list[GroupRow]:
    """The recipe groups, or none when no recipe was trained with several seeds."""
    groups = group_runs(rows)
    return groups if any(len(set(g.seeds)) > 1 for g in groups) else []


def _pm(mean: float | None, sd: float | None) -> str:
    if mean is None:
        return "–"
    return f"{mean:.4f}" if sd is None else f"{mean:.4f} ± {sd:.4f}"


def group_cells(g: GroupRow) -> list[str]:
    """A group as the table and markdown show it (GROUP_HEADERS)."""
    return [
        g.name,
        g.cells or "–",
        str(g.n),
        _pm(g.valid_mean, g.valid_sd),
        _pm(g.at_tokens_mean, g.at_tokens_sd),
        _pm(g.at_time_mean, g.at_time_sd),
        _pm(g.test_mean, g.test_sd),
        ", ".join(g.unresolved) or "–",
    ]


def groups_note(groups: Sequence[GroupRow]) -> str:
    """What 'not resolved from' was judged on, and why."""
    basis = groups[0].judged_on if groups else "final"
    why = (
        "every run trained under the same budget and finished it"
        if basis == "final"
        else "the runs' budgets differ (or not every run finished)"
    )
    return (
        f"mean ± sd over seeds; not resolved from: valid {basis} means closer than two standard "
        f"errors of their difference (Welch), or a single seed; judged on valid {basis} because {why}"
    )


def text_cells(row: RunRow) -> list[str]:
    """The row as the table and markdown show it."""
    return [fmt(get(row)) for _h, _k, get, fmt in COLUMNS]


TEXT_HEADERS = frozenset({"run", "state", "corpus", "cell"})  # left-aligned; the rest are numbers


def headers() -> list[str]:
    return [h for h, *_ in COLUMNS]


def to_markdown(rows: Sequence[RunRow]) -> str:
    """A GitHub table, the best run (first row, when it has a valid bpc) in bold, and the
    budget note; then the seed groups and their note when a recipe has several seeds."""
    body = [text_cells(row) for row in rows]
    if rows and rows[0].best_valid_bpc is not None:
        body[0] = [f"**{c}**" for c in body[0]]
    lines = [*_markdown_table(headers(), body), "", budget_note(rows) + "."]
    groups = seed_groups(rows)
    if groups:
        lines += ["", *_markdown_table(GROUP_HEADERS, [group_cells(g) for g in groups])]
        lines += ["", groups_note(groups) + "."]
    return "\n".join(lines) + "\n"


def _markdown_table(header: Sequence[str], body: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for cells in body:
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return lines


def to_csv(rows: Sequence[RunRow]) -> str:
    """One line per run; equal_tokens and equal_step_s name the common points on every line."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    extras = ("stop_reason", "budget", "path", "test_step", "test_stale")
    extras += ("equal_tokens", "equal_step_s")
    writer.writerow([key for _h, key, *_ in COLUMNS] + list(extras))
    for row in rows:
        values = [get(row) for _h, _k, get, _f in COLUMNS] + [getattr(row, k) for k in extras]
        writer.writerow(["" if v is None else v for v in values])
    return buf.getvalue()


def to_json(rows: Sequence[RunRow]) -> str:
    """The runs (with their curves), the common points, and every recipe group.

    Unlike the table, `groups` is there even when each recipe has one seed (n = 1), so a
    script reads one shape; a group's `judged_on` says which figure `unresolved` compared.
    """
    data = {
        "equal_tokens": rows[0].equal_tokens if rows else None,
        "equal_step_s": rows[0].equal_step_s if rows else None,
        "runs": [{**asdict(r), "perplexity": r.perplexity} for r in rows],
        "groups": [{**asdict(g), "n": g.n} for g in group_runs(rows)],
    }
    return json.dumps(data, indent=2) + "\n"


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


__all__ = [
    "GROUP_HEADERS",
    "GroupRow",
    "budget_note",
    "equal_budgets",
    "group_cells",
    "group_name",
    "groups_note",
    "same_budget",
    "seed_groups",
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
    "read_run",
    "render",
    "text_cells",
    "to_csv",
    "to_json",
    "to_markdown",
]
