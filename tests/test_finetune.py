"""Fine-tuning: a new run starts from trained weights (train.init_from), vocabulary checked."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from lstmlab.checkpoint import load_checkpoint
from lstmlab.cli.app import app
from lstmlab.config import apply_overrides, validate
from lstmlab.corpora.store import write_corpus
from lstmlab.errors import ConfigError, VocabularyError
from lstmlab.finetune import init_from
from lstmlab.model import build_model
from lstmlab.tokenizers import CharTokenizer
from lstmlab.train import fit

from support import TINY_RECIPE, TINY_TEXT


def _cfg(*overrides):
    return validate(apply_overrides(TINY_RECIPE, ["train.max_steps=2", *overrides]))


@pytest.fixture
def source(tiny_corpus, tmp_path):
    run = tmp_path / "source"
    fit(_cfg(), run)
    return run


def test_same_vocabulary_loads_every_weight(source, tiny_corpus):
    cfg = _cfg(f"train.init_from={source}")
    model = build_model(cfg.model, tiny_corpus.vocab_size)
    info = init_from(model, cfg, tiny_corpus.tokenizer)
    trained = load_checkpoint(source / "checkpoints" / "best.pt")["model"]
    assert all(torch.equal(v, trained[k]) for k, v in model.state_dict().items())
    assert info["kept"] == tiny_corpus.vocab_size and info["added"] == []


def test_another_network_is_refused_naming_the_field(source, tiny_corpus):
    cfg = _cfg(f"train.init_from={source}", "model.cell.hidden_dim=32")
    with pytest.raises(ConfigError, match="model.cell.hidden_dim"):
        init_from(build_model(cfg.model, tiny_corpus.vocab_size), cfg, tiny_corpus.tokenizer)


def test_another_vocabulary_is_refused_or_extended_by_symbol(source, tiny_corpus, tmp_path):
    symbols = sorted(set(TINY_TEXT) | set("XYZ"))  # three new symbols
    tok = CharTokenizer(symbols)
    ids = np.array(tok.encode(TINY_TEXT + "XYZ" * 10))
    other = write_corpus(
        tmp_path / "data", "other", tok, {s: ids for s in ("train", "valid", "test")}
    )
    cfg = _cfg(f"train.init_from={source}", "data.corpus=other")
    with pytest.raises(VocabularyError, match="another vocabulary"):
        init_from(build_model(cfg.model, other.vocab_size), cfg, other.tokenizer)
    cfg = _cfg(f"train.init_from={source}", "data.corpus=other", "train.extend_vocab=true")
    model = build_model(cfg.model, other.vocab_size)
    fresh = model.embedding.weight.detach().clone()
    info = init_from(model, cfg, other.tokenizer)
    assert info["added"] == ["X", "Y", "Z"] and info["kept"] == tiny_corpus.vocab_size
    trained = load_checkpoint(source / "checkpoints" / "best.pt")["model"]
    old = tiny_corpus.tokenizer.symbols
    for j, symbol in enumerate(symbols):
        row = model.embedding.weight[j]
        expected = trained["embedding.weight"][old.index(symbol)] if symbol in old else fresh[j]
        assert torch.equal(row, expected), symbol
        if symbol in old:
            assert torch.equal(model.head.bias[j], trained["head.bias"][old.index(symbol)])


def test_extend_vocab_needs_a_source():
    with pytest.raises(ConfigError, match="extend_vocab"):
        _cfg("train.extend_vocab=true")


def test_cli_fine_tunes_records_the_source_and_refuses_changing_it(source, tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(apply_overrides(TINY_RECIPE, ["train.max_steps=2"])))
    run = tmp_path / "tuned"
    result = CliRunner().invoke(
        app, ["train", str(recipe), "--run-dir", str(run), "--init-from", str(source)]
    )
    assert result.exit_code == 0, result.output
    assert "initialised from" in result.output
    stored = yaml.safe_load((run / "config.yaml").read_text())["train"]["init_from"]
    assert stored == str(source.resolve())
    again = CliRunner().invoke(
        app, ["train", "--resume", str(run), "--set", "train.max_steps=4", "--init-from", str(run)]
    )
    assert again.exit_code == 2 and "train.init_from" in again.output
