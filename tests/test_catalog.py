"""catalog.py: every registered cell and every recipe file, with parameter counts checked independently."""

from __future__ import annotations

import pytest

from lstmlab import catalog
from lstmlab.cells import CELLS
from lstmlab.config import load_recipe
from lstmlab.errors import UsageError
from lstmlab.model import build_model

from support import REPO


def lstm_parameters(vocab: int, embed: int, hidden: int, layers: int) -> int:
    """By hand: embedding, per layer 4H x (input + H) weights and two 4H biases, then the head."""
    total, inp = vocab * embed, embed
    for _ in range(layers):
        total += 4 * hidden * (inp + hidden) + 8 * hidden
        inp = hidden
    return total + hidden * vocab + vocab


def test_cell_catalog_is_exactly_the_registry():
    infos = catalog.cell_catalog(hidden_dim=32, embed_dim=16, num_layers=2, vocab_size=50)
    assert [i.name for i in infos] == list(CELLS)
    for info in infos:
        assert info.paper == CELLS[info.name].paper
        names = [h.name for h in info.hyperparameters]
        assert "hidden_dim" in names and "kind" not in names
        assert info.num_parameters is not None or info.problem


def test_lstm_count_matches_the_formula():
    info = {
        i.name: i
        for i in catalog.cell_catalog(hidden_dim=32, embed_dim=16, num_layers=3, vocab_size=50)
    }
    assert info["lstm"].num_parameters == lstm_parameters(50, 16, 32, 3)
    defaults = {h.name: h.default for h in info["lstm"].hyperparameters}
    assert defaults["hidden_dim"] == "required" and defaults["capped_input_gate"] == "false"


def test_meta_count_equals_a_real_build():
    cfg = load_recipe(REPO / "recipes" / "tiny" / "lstm.yaml")
    assert catalog.count_parameters(cfg.model, 103) == build_model(cfg.model, 103).num_parameters()
    assert catalog.count_parameters(cfg.model, 103) == lstm_parameters(103, 64, 256, 2)


def test_recipe_catalog_lists_every_recipe_file():
    infos = catalog.recipe_catalog(REPO / "recipes")
    expected = sorted(str(p.relative_to(REPO)) for p in (REPO / "recipes").rglob("*.yaml"))
    assert [i.path for i in infos] == expected
    ptb = next(i for i in infos if i.path == "recipes/ptb/lstm.yaml")
    assert (ptb.corpus, ptb.cells, ptb.budget) == ("ptb", "lstm", "500 epochs")
    assert ptb.num_parameters == 13_787_650  # AWD-LSTM's 13.8M, tied
    assert "awd-lstm" in ptb.source


def test_invalid_recipe_is_listed_with_its_problem(tmp_path):
    (tmp_path / "recipes" / "x").mkdir(parents=True)
    (tmp_path / "recipes" / "x" / "bad.yaml").write_text("data: {corpus: ptb}\nmodel: 3\n")
    (tmp_path / "recipes" / "x" / "odd.yaml").write_text(
        (REPO / "recipes" / "tiny" / "lstm.yaml").read_text().replace("builtin", "mycorpus")
    )
    bad, odd = catalog.recipe_catalog(tmp_path / "recipes")
    assert bad.path == "recipes/x/bad.yaml" and bad.problem and bad.corpus is None
    assert odd.num_parameters is None and "needs corpus" in odd.problem


def test_vocab_size_prefers_the_prepared_corpus(tiny_corpus):
    assert catalog.vocab_size_of("tiny") == tiny_corpus.vocab_size
    assert catalog.vocab_size_of("ptb") == 50
    assert catalog.vocab_size_of("unknown") is None


def test_missing_recipe_folder_and_bad_sizes(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        catalog.recipe_files(tmp_path / "nope")
    with pytest.raises(UsageError, match=">= 1"):
        catalog.cell_catalog(hidden_dim=0, embed_dim=4, num_layers=1, vocab_size=5)
