"""Run folders with a real (untrained) checkpoint, written without training, for eval/sample tests.

The checkpoint carries what training records about its corpus; `corpus_record`
lets a test fake old checkpoints (no split checksums) or other corpus paths.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import yaml

from lstmlab.checkpoint import save_checkpoint
from lstmlab.config import validate
from lstmlab.corpora.store import write_corpus
from lstmlab.model import build_model
from lstmlab.tokenizers import CharTokenizer

from support import TINY_RECIPE, TINY_TEXT

_DEFAULT = object()


def tiny_corpus_at(data_dir: Path, text: str = TINY_TEXT, name: str = "tiny"):
    """A char corpus `name` in data_dir, split 80/10/10."""
    tok = CharTokenizer(sorted(set(TINY_TEXT)))
    ids = np.array(tok.encode(text))
    n = len(ids)
    splits = {
        "train": ids[: int(0.8 * n)],
        "valid": ids[int(0.8 * n) : int(0.9 * n)],
        "test": ids[int(0.9 * n) :],
    }
    return write_corpus(data_dir, name, tok, splits, replace=True)  # re-preparing replaces it


def corpus_record(corpus, *, splits: bool = True) -> dict:
    """payload["corpus"] as training writes it (with the split checksums unless `splits` is False)."""
    record = {"name": corpus.name, "path": str(Path(corpus.path).resolve())}
    if splits:
        record["splits"] = {k: v.sha256 for k, v in corpus.meta.splits.items()}
    return record


def make_checkpoint(
    run: Path,
    corpus,
    *,
    which: str = "best",
    step: int = 6,
    seed: int = 0,
    record=_DEFAULT,
    recipe: dict | None = None,
) -> Path:
    """Write run/checkpoints/<which>.pt (and run/config.yaml) for an untrained tiny model on `corpus`."""
    cfg = validate(recipe or TINY_RECIPE)
    torch.manual_seed(seed)
    model = build_model(cfg.model, corpus.vocab_size)
    (run / "checkpoints").mkdir(parents=True, exist_ok=True)
    (run / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict()), encoding="utf-8")
    payload = {
        "config": cfg.to_dict(),
        "tokenizer": corpus.tokenizer.to_meta(),
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "train_state": {"step": step, "best_step": step},
        "num_parameters": model.num_parameters(),
    }
    if record is _DEFAULT:
        record = corpus_record(corpus)
    if record is not None:
        payload["corpus"] = record
    return save_checkpoint(run / "checkpoints" / f"{which}.pt", payload)
