"""Every cell has its recipes, and its tiny recipe trains, evaluates and samples on the real PTB copy."""

from __future__ import annotations

import pytest
from conftest import shared_ptb_dir
from typer.testing import CliRunner

from lstmlab.cells import CELLS
from lstmlab.checkpoint import load_for_inference
from lstmlab.cli.app import app
from lstmlab.config import load_recipe
from lstmlab.corpora.store import open_corpus
from lstmlab.evaluate import evaluate

from support import REPO

runner = CliRunner()


@pytest.mark.parametrize("kind", sorted(CELLS))
def test_each_cell_has_its_recipes(kind):
    for corpus in ("tiny", "ptb", "enwik8"):
        recipe = load_recipe(REPO / "recipes" / corpus / f"{kind}.yaml")
        assert recipe.model.cell.kind == kind
        assert recipe.reference and recipe.reference.source


@pytest.fixture(scope="module")
def ptb_data(tmp_path_factory):
    source = shared_ptb_dir()
    if source is None:
        pytest.skip("../shared/data/ptb is absent on this machine")
    data_dir = tmp_path_factory.mktemp("ptb-data")
    args = ["prepare", "ptb", "--source", str(source), "--data-dir", str(data_dir)]
    result = runner.invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return data_dir


@pytest.mark.parametrize("kind", ["mogrifier", "multiplicative"])
def test_tiny_recipe_trains_evaluates_and_samples_on_real_ptb(kind, ptb_data, tmp_path):
    run = tmp_path / "run"
    sets = ["data.corpus=ptb", f"data.data_dir={ptb_data}", "train.max_steps=2"]
    sets += ["train.batch_size=4", "train.bptt=16", "train.eval_tokens=200"]  # a smoke test
    args = ["train", str(REPO / "recipes" / "tiny" / f"{kind}.yaml"), "--run-dir", str(run)]
    args += [a for s in sets for a in ("--set", s)] + ["--device", "cpu"]
    result = runner.invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    model, tokenizer, _, _ = load_for_inference(run)
    valid = open_corpus(ptb_data, "ptb").tokens("valid")
    res = evaluate(model, valid, batch_size=4, bptt=64, max_tokens=200)
    assert res.tokens == 200 and 0 < res.bpc < 8
    args = ["sample", str(run), "--prime", "the ", "--length", "30", "--device", "cpu"]
    result = runner.invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0 and result.stdout.startswith("the "), result.output
