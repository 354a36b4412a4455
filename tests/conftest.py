"""Shared fixtures: the real PTB copy (when present) and small synthetic corpora."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from support import REPO, TINY_RECIPE, TINY_TEXT


def shared_ptb_dir() -> Path | None:
    """The checksum-verified PTB copy in ../shared/data/ptb, or $LSTMLAB_PTB_DIR."""
    candidates = [
        os.environ.get("LSTMLAB_PTB_DIR"),
        REPO.parent / "shared" / "data" / "ptb",
        "/work/shared/data/ptb",
    ]
    for cand in candidates:
        if cand and (Path(cand) / "ptb.char.train.txt").is_file():
            return Path(cand)
    return None


@pytest.fixture
def ptb_dir() -> Path:
    path = shared_ptb_dir()
    if path is None:
        pytest.skip("../shared/data/ptb is absent on this machine")
    return path


@pytest.fixture(autouse=True)
def _isolated_data_dir(tmp_path, monkeypatch):
    """No test reads or writes the developer's ./data or ./runs by accident."""
    monkeypatch.setenv("LSTMLAB_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def tiny_corpus(tmp_path):
    """A prepared 3-split character corpus named `tiny` in $LSTMLAB_DATA_DIR."""
    import numpy as np

    from lstmlab.corpora.store import write_corpus
    from lstmlab.tokenizers import CharTokenizer

    tok = CharTokenizer(sorted(set(TINY_TEXT)))
    ids = np.array(tok.encode(TINY_TEXT))
    n = len(ids)
    return write_corpus(
        tmp_path / "data",
        "tiny",
        tok,
        {
            "train": ids[: int(0.8 * n)],
            "valid": ids[int(0.8 * n) : int(0.9 * n)],
            "test": ids[int(0.9 * n) :],
        },
    )


@pytest.fixture
def tiny_recipe(tmp_path, tiny_corpus):
    """Path of a YAML recipe that trains a 2-layer LSTM on `tiny` in well under a second."""
    import yaml

    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY_RECIPE), encoding="utf-8")
    return path
