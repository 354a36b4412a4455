"""Run directories: where a run's recipe, metrics, checkpoints and evaluation live.

runs/<run>/config.yaml       the resolved recipe (every default filled in)
runs/<run>/metrics.jsonl     one JSON object per log step and per validation
runs/<run>/checkpoints/      last.pt, best.pt
runs/<run>/eval.json         what `lstmlab eval` measured
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import yaml

from lstmlab.errors import CheckpointError, UsageError

CHECKPOINTS = "checkpoints"


def default_run_name(recipe_path: Path | None, corpus: str, cell: str) -> str:
    stem = recipe_path.stem if recipe_path else cell
    return f"{stem}-{corpus}-{time.strftime('%Y%m%d-%H%M%S')}"


def prepare_run_dir(run_dir: Path, *, force: bool = False) -> Path:
    """Create a fresh run folder; an existing non-empty one is never overwritten silently."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise UsageError(f"{run_dir} exists and is not a folder")
    if run_dir.is_dir() and any(run_dir.iterdir()):
        if not force:
            raise UsageError(
                f"run folder {run_dir} already exists",
                hint=f"resume it with `--resume {run_dir}`, pick another --run-dir, or pass --force to replace it",
            )
        import shutil

        shutil.rmtree(run_dir)
    (run_dir / CHECKPOINTS).mkdir(parents=True, exist_ok=True)
    return run_dir


def checkpoint_path(run_dir: Path, which: str) -> Path:
    return Path(run_dir) / CHECKPOINTS / f"{which}.pt"


def resolve_checkpoint(run_or_checkpoint: Path, which: str | Path = "best") -> Path:
    """The checkpoint file meant: `which` (best, last or a .pt path) of a run folder, or a .pt itself.

    Never falls back to another checkpoint than the one asked for: evaluating
    last.pt when best.pt was meant would report another model's figures. A
    missing one is an error naming the checkpoints that exist.
    """
    path = Path(run_or_checkpoint)
    if which not in ("best", "last"):  # a --checkpoint PATH: as given, else inside the run folder
        for cand in (Path(which), path / which if path.is_dir() else None):
            if cand is not None and cand.is_file():
                return cand
        raise CheckpointError(
            f"checkpoint {which} does not exist",
            hint="pass --checkpoint best, last, or the path of a .pt file written by `lstmlab train`",
        )
    if path.is_file():
        return path
    if not path.exists():
        raise CheckpointError(
            f"{path} does not exist", hint="pass a run folder (runs/<run>) or a checkpoint file"
        )
    cand = checkpoint_path(path, str(which))
    if cand.is_file():
        return cand
    present = sorted(
        p.name for p in (path / CHECKPOINTS).glob("*.pt") if not p.name.startswith(".")
    )
    if not present:
        raise CheckpointError(
            f"{path} holds no checkpoint",
            hint="train it first, or point at a run folder with checkpoints/",
        )
    other = "last" if which == "best" else "best"
    hint = (
        f"pass --checkpoint {other}"
        if f"{other}.pt" in present
        else f"pass --checkpoint {path / CHECKPOINTS / present[-1]}"
    )
    raise CheckpointError(
        f"{path} has no {which}.pt checkpoint (it has {', '.join(present)})", hint=hint
    )


def run_dir_of(checkpoint: Path) -> Path:
    """The run folder a checkpoint belongs to: <run>/checkpoints/x.pt -> <run>; else its folder."""
    checkpoint = Path(checkpoint)
    return checkpoint.parent.parent if checkpoint.parent.name == CHECKPOINTS else checkpoint.parent


def write_config(run_dir: Path, config: dict) -> None:
    (Path(run_dir) / "config.yaml").write_text(
        yaml.safe_dump(config, sort_keys=False), encoding="utf-8"
    )


def append_metrics(run_dir: Path, record: dict) -> None:
    with open(Path(run_dir) / "metrics.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def read_metrics(run_dir: Path) -> list[dict]:
    """Every readable record; a torn last line (crash mid-write) is skipped."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def truncate_metrics(run_dir: Path, step: int) -> None:
    """On resume, drop records written after the checkpoint's step (they will be redone)."""
    path = Path(run_dir) / "metrics.jsonl"
    if path.is_file():
        kept = [r for r in read_metrics(run_dir) if r.get("step", 0) <= step]
        path.write_text("".join(json.dumps(r) + "\n" for r in kept), encoding="utf-8")


RUNNING = "running.json"


def mark_running(run_dir: Path) -> None:
    """Say which process trains this run; `compare` tells in-progress from crashed with it."""
    import os
    import socket

    record = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
    (Path(run_dir) / RUNNING).write_text(json.dumps(record) + "\n", encoding="utf-8")


def clear_running(run_dir: Path) -> None:
    """Training ended (budget reached or stopped cleanly): the marker goes; a crash leaves it."""
    (Path(run_dir) / RUNNING).unlink(missing_ok=True)
