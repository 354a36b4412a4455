"""catalog.py: every registered cell and every recipe file, with parameter counts checked independently."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from lstmlab import catalog
from lstmlab.cells import CELLS
from lstmlab.cells.configs import CELL_CONFIGS
from lstmlab.cli.app import app
from lstmlab.config import ModelConfig, RunConfig, TrainConfig, load_recipe, load_yaml, validate
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


def test_a_cell_that_cannot_be_that_wide_is_listed_with_its_problem():
    info = {
        i.name: i
        for i in catalog.cell_catalog(hidden_dim=10, embed_dim=8, num_layers=1, vocab_size=5)
    }
    assert info["slstm"].num_parameters is None
    assert info["slstm"].problem == (
        "model: cell.num_heads 4 does not divide the slstm width 10; pick a divisor, e.g. 4"
    )
    assert info["lstm"].num_parameters is not None


def test_lstm_count_matches_the_formula():
    info = {
        i.name: i
        for i in catalog.cell_catalog(hidden_dim=32, embed_dim=16, num_layers=3, vocab_size=50)
    }
    assert info["lstm"].num_parameters == lstm_parameters(50, 16, 32, 3)
    defaults = {h.name: h.default for h in info["lstm"].hyperparameters}
    assert defaults["hidden_dim"] == "null" and defaults["capped_input_gate"] == "false"


def test_meta_count_equals_a_real_build():
    cfg = load_recipe(REPO / "recipes" / "tiny" / "lstm.yaml")
    assert catalog.count_parameters(cfg.model, 103) == build_model(cfg.model, 103).num_parameters()
    assert catalog.count_parameters(cfg.model, 103) == lstm_parameters(103, 64, 272, 2)  # params 1M


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


# ---------------------------------------------------------------- the schema, documented


RECIPES = sorted((REPO / "recipes").rglob("*.yaml"))


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: str(p.relative_to(REPO / "recipes")))
def test_commented_yaml_loads_back_to_the_same_recipe(path):
    cfg = load_recipe(path)
    text = catalog.commented_yaml(cfg)
    assert validate(load_yaml(text)) == cfg


def test_commented_yaml_puts_description_type_and_default_above_each_key():
    cfg = load_recipe(REPO / "recipes" / "tiny" / "mlstm.yaml")
    lines = catalog.commented_yaml(cfg, width=1000).splitlines()
    keys = [i for i, line in enumerate(lines) if not line.lstrip().startswith("#")]
    assert all(lines[i - 1].lstrip().startswith("# ") for i in keys)  # every key has its comment
    above = {lines[i].strip(): lines[i - 1].strip() for i in keys}
    assert above["num_heads: 4"] == (
        "# Memory heads; must divide the inner width round_up(proj_factor * d, 64). "
        "(int, default 4, [1, 2**31-1])"
    )
    assert above["lr: 0.002"] == "# Peak learning rate (after warm-up). (float, required, > 0)"
    assert above["slstm: null"].endswith("(section | null)")
    assert "  cell:" in lines and "    kind: mlstm" in lines  # nested, indented


def test_commented_yaml_wraps_long_comments():
    cfg = load_recipe(REPO / "recipes" / "tiny" / "lstm.yaml")
    comments = [line for line in catalog.commented_yaml(cfg, width=80).splitlines() if "# " in line]
    assert all(len(line) <= 80 for line in comments)
    assert len(comments) > len(type(cfg).model_fields)  # some did wrap


def test_committed_recipe_reference_is_the_generated_one():
    committed = (REPO / "docs" / "recipe-reference.md").read_text(encoding="utf-8")
    assert committed == catalog.recipe_reference(), (
        "docs/recipe-reference.md is stale: python -m lstmlab.catalog > docs/recipe-reference.md"
    )


def test_recipe_reference_lists_every_field_of_every_section():
    text = catalog.recipe_reference()
    for config in CELL_CONFIGS:
        kind = config.model_fields["kind"].default
        assert f"### `model.cell` with `kind: {kind}`" in text
    for section in ("reference", "data", "model", "model.dropout", "train", "train.optimizer"):
        assert f"## `{section}`" in text
    for section in ("train.schedule", "eval", "eval.dynamic", "model.slstm"):
        assert f"## `{section}`" in text
    for model in (RunConfig, ModelConfig, TrainConfig, *CELL_CONFIGS):
        for name, info in model.model_fields.items():
            assert f"| `{name}` |" in text and info.description.replace("|", "\\|") in text
    assert "| `precision` | str | `fp32` | fp32 \\| bf16 \\| fp16 |" in text
    assert "| `batch_size` | int | required | (0, 2**31-1] |" in text


def test_cells_command_shows_each_hyperparameter_description(monkeypatch):
    from rich.console import Console

    # a console wide enough that no description wraps across table lines, whatever width
    # an earlier test in this process left the shared one with
    monkeypatch.setattr("lstmlab.cli.cells.console", Console(width=400, highlight=False))
    result = CliRunner().invoke(app, ["cells", "--hidden", "64"])
    assert result.exit_code == 0, result.output
    flat = " ".join(result.output.split())
    for name in CELLS:
        for h in catalog.hyperparameters(CELLS[name].config):
            assert h.description and " ".join(h.description.split()[:4]) in flat, h.name


def test_type_text_reads_like_a_recipe():
    fields = ModelConfig.model_fields
    assert catalog.type_text(fields["slstm_at"].annotation) == "[int, ...] | str"
    assert catalog.type_text(fields["slstm"].annotation) == "section | null"
    assert catalog.type_text(TrainConfig.model_fields["max_steps"].annotation) == "int | null"
