"""Starting a run from trained weights (`train.init_from`): fine-tuning on another corpus.

The source is anything `lstmlab.load` reads: a run folder, a .pt checkpoint, an
export folder or `hf://user/repo`. Its network must be the recipe's (the same
`model` section, field by field), and its vocabulary the corpus's. For char
vocabularies `train.extend_vocab` relaxes the second rule: symbols the source
knows keep their trained embedding and softmax rows, new symbols get the fresh
rows of the model's own initialisation, and symbols the corpus lacks are dropped.
The optimizer, schedule and counters start afresh: this is a new run, not a resume.
"""

from __future__ import annotations

import torch

from lstmlab.config import RunConfig
from lstmlab.errors import ConfigError, VocabularyError
from lstmlab.resume import diff_keys

# Parameters with one row per vocabulary symbol (the head's rows are the output symbols).
VOCAB_ROWS = ("embedding.weight", "head.weight", "head.bias")


def init_from(model: torch.nn.Module, cfg: RunConfig, corpus_tokenizer) -> dict:
    """Load `cfg.train.init_from`'s weights into `model` (built for `cfg` and the corpus).

    Returns what happened, for the run's metrics: source, symbols kept and added.
    """
    from lstmlab.portable import load_model

    source = cfg.train.init_from
    src_model, src_tokenizer, src_cfg, where = load_model(source, which="best", device="cpu")
    diffs = diff_keys(src_cfg.to_dict()["model"], cfg.to_dict()["model"], "model")
    if diffs:
        raise ConfigError(
            f"train.init_from {source}: its network differs from the recipe's at {', '.join(diffs)}",
            hint="copy the model section of the source's config.yaml into the recipe",
        )
    state = {k: v.detach().cpu() for k, v in src_model.state_dict().items()}
    same = src_tokenizer.to_meta() == corpus_tokenizer.to_meta()
    if same:
        model.load_state_dict(state)
        return {"init_from": str(source), "kept": corpus_tokenizer.vocab_size, "added": []}
    if not cfg.train.extend_vocab:
        raise VocabularyError(
            f"train.init_from {source} was trained with another vocabulary than this corpus's",
            hint="fine-tune on a corpus with the same tokenizer, or (char vocabularies) pass "
            "--extend-vocab to add fresh rows for new symbols",
        )
    if (
        src_tokenizer.to_meta().get("kind") != "char"
        or corpus_tokenizer.to_meta().get("kind") != "char"
    ):
        raise VocabularyError(
            f"train.init_from {source}: --extend-vocab maps char vocabularies only",
            hint="fine-tune on a corpus prepared with the source's tokenizer",
        )
    return _extend(model, state, src_tokenizer.symbols, corpus_tokenizer.symbols, str(source))


def _extend(model, state: dict, old: list[str], new: list[str], source: str) -> dict:
    """Copy every weight; vocabulary rows by symbol, fresh rows for symbols the source lacks."""
    own = model.state_dict()
    index = {s: i for i, s in enumerate(old)}
    kept = [(j, index[s]) for j, s in enumerate(new) if s in index]
    for name in VOCAB_ROWS:
        if name in state:
            rows = own[name].clone()  # (V_new, ...) the model's own init for new symbols
            dst, src = zip(*kept) if kept else ((), ())
            rows[list(dst)] = state[name][list(src)]
            state[name] = rows
    model.load_state_dict(state)
    added = [s for s in new if s not in index]
    return {"init_from": source, "kept": len(kept), "added": added}


__all__ = ["VOCAB_ROWS", "init_from"]
