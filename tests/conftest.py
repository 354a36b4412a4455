"""Shared fixtures: the real PTB copy (when present) and small synthetic corpora."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_ptb_dir() -> Path | None:
    """The checksum-verified PTB copy in ../shared/data/ptb, or $LSTMLAB_PTB_DIR."""
    candidates = [os.environ.get("LSTMLAB_PTB_DIR"), REPO.parent / "shared" / "data" / "ptb", "/work/shared/data/ptb"]
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
