"""What a resumed run may change, and the recipe it continues with.

A run resumes from its last.pt with its config.yaml (or a recipe describing the
same network) plus `--set` overrides. Fields that shape the network, the saved
optimizer state, the random streams or the data stream (FIXED_ON_RESUME) are
refused by name when they differ from the checkpoint's recipe; every other field
takes effect from the next step and is recorded. A corpus that changed under the
run's corpus name (other split checksums) is refused.
"""

from __future__ import annotations

from pathlib import Path

from lstmlab import runs
from lstmlab.config import RunConfig, load_recipe, validate
from lstmlab.corpora.store import Corpus, prepare_command
from lstmlab.errors import ConfigError, CorpusError, UsageError

# Fields a resumed run cannot change: they shape the network, the optimizer's state or
# the data stream. Every other field takes effect from the next step.
FIXED_ON_RESUME = (
    "model",
    "seed",
    "data.corpus",
    "data.tokenizer",
    "train.batch_size",
    "train.optimizer.name",
    "train.optimizer.decay",
    "train.init_from",
    "train.extend_vocab",
)


def diff_keys(a, b, prefix: str) -> list[str]:
    """Dotted paths where two nested dicts differ, e.g. ['model.cell.hidden_dim']."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b)):
            out += diff_keys(a.get(key), b.get(key), f"{prefix}.{key}" if prefix else key)
        return out
    return [] if a == b else [prefix]


def check_architecture(cfg: RunConfig, stored: dict, where: Path) -> None:
    """A resumed run keeps its network: any difference in `model` is an error naming the fields."""
    diffs = diff_keys(stored["model"], cfg.to_dict()["model"], "model")
    if diffs:
        raise ConfigError(
            f"the recipe's model differs from the checkpoint being resumed ({where}) at: {', '.join(diffs)}",
            hint="drop those overrides, or start a new run instead of --resume",
        )


def with_current_defaults(stored: dict) -> dict:
    """A checkpoint's recipe with the fields added since it was written at their defaults
    (as its config.yaml loads), so that they do not count as changes; as stored if it no
    longer validates."""
    try:
        return validate(stored).to_dict()
    except ConfigError:
        return stored


def resume_changes(cfg: RunConfig, stored: dict, where: Path) -> list[str]:
    """The fields `cfg` changes against the checkpoint's recipe; refuses the fixed ones."""
    stored = with_current_defaults(stored)
    check_architecture(cfg, stored, where)
    diffs = diff_keys(stored, cfg.to_dict(), "")
    fixed = [d for d in diffs if any(d == f or d.startswith(f + ".") for f in FIXED_ON_RESUME)]
    if fixed:
        raise ConfigError(
            f"{', '.join(fixed)} cannot change when resuming {where} (the saved optimizer, random "
            "and stream state belong to the old value)",
            hint="drop those overrides (or undo the edit to config.yaml), or start a new run",
        )
    return diffs


def check_same_corpus(payload: dict, corpus: Corpus, run_dir: Path) -> None:
    """Refuse to resume on a corpus that changed under the run's corpus name."""
    if payload["tokenizer"] != corpus.tokenizer.to_meta():
        raise CorpusError(
            f"corpus {corpus.name!r} has another vocabulary than the run {run_dir} was trained on",
            hint="resume with the corpus the run was started on (data.corpus / data.data_dir)",
        )
    stored = (payload.get("corpus") or {}).get("splits")
    if stored and stored != corpus_identity(corpus)["splits"]:
        raise CorpusError(
            f"corpus {corpus.name!r} in {corpus.path.parent} is not the one {run_dir} was trained on "
            "(its split checksums differ)",
            hint=f"prepare the original corpus again (`{prepare_command(corpus.name, again=True)}`) or point "
            "--set data.data_dir=DIR at it",
        )


def load_run_config(run_dir: Path, overrides=()) -> RunConfig:
    """The stored recipe of a run (its config.yaml), with overrides applied, for --resume."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise UsageError(
            f"{run_dir} is not a run folder (no config.yaml)",
            hint="pass the folder `lstmlab train` created, e.g. --resume runs/NAME",
        )
    return load_recipe(path, overrides)


def resume_config(run_dir: Path, recipe: Path | None = None, overrides=()) -> RunConfig:
    """The recipe a resumed run continues with: its config.yaml (or `recipe`) plus `overrides`.

    A recipe given with --resume must describe the same network.
    """
    cfg = load_run_config(run_dir, overrides)
    if recipe is not None:
        recipe_cfg = load_recipe(recipe, overrides)
        check_architecture(recipe_cfg, cfg.to_dict(), Path(run_dir))
        cfg = recipe_cfg
    if not runs.checkpoint_path(run_dir, "last").is_file():
        raise UsageError(
            f"{run_dir} has no checkpoints/last.pt to resume from",
            hint="start it again without --resume",
        )
    return cfg


def corpus_identity(corpus: Corpus) -> dict:
    """What a checkpoint records of its corpus: name, absolute folder and split checksums."""
    return {
        "name": corpus.name,
        "path": str(Path(corpus.path).resolve()),
        "splits": {split: info.sha256 for split, info in corpus.meta.splits.items()},
    }


__all__ = [
    "FIXED_ON_RESUME",
    "check_architecture",
    "check_same_corpus",
    "corpus_identity",
    "load_run_config",
    "resume_changes",
    "resume_config",
]
