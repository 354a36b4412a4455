"""A trained tiny run for the portable-model tests (export, load, Hub, score)."""

from __future__ import annotations

import shutil
from pathlib import Path

from support import TINY_RECIPE, TINY_TEXT


def write_tiny_corpus(data_dir: Path, name: str = "tiny"):
    """The `tiny` character corpus of conftest's fixture, in `data_dir`."""
    import numpy as np

    from lstmlab.corpora.store import write_corpus
    from lstmlab.tokenizers import CharTokenizer

    tok = CharTokenizer(sorted(set(TINY_TEXT)))
    ids = np.array(tok.encode(TINY_TEXT))
    n = len(ids)
    splits = {
        "train": ids[: int(0.8 * n)],
        "valid": ids[int(0.8 * n) : int(0.9 * n)],
        "test": ids[int(0.9 * n) :],
    }
    return write_corpus(data_dir, name, tok, splits)


def train_tiny_run(root: Path, overrides: tuple[str, ...] = ()) -> Path:
    """Train TINY_RECIPE for 4 steps on a corpus under `root`/data; the run folder."""
    from lstmlab.config import apply_overrides, validate
    from lstmlab.train import fit

    data_dir = root / "data"
    write_tiny_corpus(data_dir)
    recipe = apply_overrides(
        TINY_RECIPE,
        ["train.max_steps=4", "train.eval_every=2", f"data.data_dir={data_dir}", *overrides],
    )
    run = root / "run"
    fit(validate(recipe), run)  # fit claims (creates) the run folder
    return run


_TRAINED: dict[str, Path] = {}  # one training per test session: CPU time is scarce


def trained_tied_run(tmp_path_factory) -> Path:
    """A 4-step TINY_RECIPE run with a tied softmax, trained once per session (read-only:
    copy it before changing it). Test modules wrap it in their own `tied_run` fixture."""
    if "tied" not in _TRAINED:
        _TRAINED["tied"] = train_tiny_run(
            tmp_path_factory.mktemp("tied"), ("model.tie_weights=true",)
        )
    return _TRAINED["tied"]


def copy_run(run: Path, dest: Path) -> Path:
    shutil.copytree(run, dest)
    return dest


def place_in_hub_cache(export: Path, cache: Path, repo_id: str, commit: str = "a" * 40) -> Path:
    """Lay `export` out as huggingface_hub's cache does: models--U--R/{refs/main,snapshots/SHA}."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    shutil.copytree(export, snapshot)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit, encoding="utf-8")
    return snapshot
