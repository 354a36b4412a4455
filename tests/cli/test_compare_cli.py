"""`lstmlab compare`, `cells`, `recipes` and `train` over several recipes, through typer's CliRunner."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest
import yaml
from typer.testing import CliRunner

from lstmlab.cells import CELLS
from lstmlab.cli import common
from lstmlab.cli.app import app

from fake_runs import make_run, standard_runs
from support import REPO, TINY_RECIPE

runner = CliRunner()


@pytest.fixture(autouse=True)
def _wide_console(monkeypatch):
    """Tables wide enough that no cell is cut (rich reads $COLUMNS only when it starts)."""
    monkeypatch.setattr(common.console, "_width", 250)
    monkeypatch.setattr(common.err_console, "_width", 250)


def invoke(*args):
    result = runner.invoke(app, [str(a) for a in args], catch_exceptions=False)
    return result, result.output


def first_column(output: str) -> list[str]:
    """The first cell of every body row of a rich table."""
    rows = [line for line in output.splitlines() if line.startswith("│")]
    return [cell for line in rows if (cell := line.split("│")[1].strip())]


def test_compare_every_format(tmp_path):
    standard_runs(tmp_path / "zoo")
    result, out = invoke("compare", tmp_path / "zoo")
    assert result.exit_code == 0, out
    assert first_column(out) == ["b", "c", "a"] and "2.2000" in out and "corpus tiny" in out
    assert "valid @tokens" in out and "valid @time" in out and "test final" in out
    assert "at 2,000 tokens" in out and "2.0 s of step time" in out  # the caption

    result, out = invoke("compare", tmp_path / "zoo", "--format", "json")
    assert [r["name"] for r in json.loads(out)["runs"]] == ["b", "c", "a"]
    result, out = invoke("compare", tmp_path / "zoo", "-f", "csv")
    assert [r["name"] for r in csv.DictReader(io.StringIO(out))] == ["b", "c", "a"]
    result, out = invoke("compare", tmp_path / "zoo", "--format", "markdown", "--context")
    note, blank, *table, blank2, budgets = out.splitlines()
    assert note.startswith("Measured ") and blank == blank2 == "" and len(table) == 5
    assert budgets.startswith("final: each run's own budget") and "2,000 tokens" in budgets
    result, out = invoke("compare", tmp_path / "zoo", "--format", "csv", "--context")
    assert result.exit_code == 2 and "--context goes with --format markdown" in out


def test_compare_runs_named_one_by_one_with_a_plot(tmp_path):
    runs = standard_runs(tmp_path)
    plot = tmp_path / "curves.png"
    result, out = invoke("compare", runs["a"], runs["c"], "--plot", plot)
    assert result.exit_code == 0, out
    assert first_column(out) == ["c", "a"]
    assert plot.read_bytes()[:4] == b"\x89PNG"


def test_compare_shows_states_and_warns_about_damage(tmp_path):
    standard_runs(tmp_path)
    make_run(tmp_path, "halfway", valid=[(10, 1000, 1.0, 2.3)], end=False)
    (tmp_path / "a" / "config.yaml").write_text("just text")
    result, out = invoke("compare", tmp_path)
    assert result.exit_code == 0, out
    assert first_column(out) == ["b", "halfway", "c"]
    assert re.search(r"halfway\s+│\s+stopped", out)
    assert out.count("warning:") == 1 and "Traceback" not in out


def test_compare_refuses_mixed_corpora_in_one_line(tmp_path):
    make_run(tmp_path, "p", valid=[(10, 1000, 1.0, 2.0)], corpus="ptb")
    make_run(tmp_path, "q", valid=[(10, 1000, 1.0, 2.5)])
    result, out = invoke("compare", tmp_path)
    assert result.exit_code == 2 and out.count("error:") == 1 and "--allow-mixed" in out
    assert invoke("compare", tmp_path, "--allow-mixed")[0].exit_code == 0


def test_compare_bad_path(tmp_path):
    result, out = invoke("compare", tmp_path / "missing")
    assert result.exit_code == 2 and "does not exist" in out and "Traceback" not in out


def test_cells_lists_exactly_the_registry():
    result, out = invoke("cells", "--hidden", "32")
    assert result.exit_code == 0, out
    assert first_column(out) == list(CELLS)
    assert "hidden 32" in out and "hidden_dim" in out


def test_recipes_lists_exactly_the_recipe_files():
    result, out = invoke("recipes", "--recipes-dir", REPO / "recipes")
    assert result.exit_code == 0, out
    files = sorted(str(p.relative_to(REPO)) for p in (REPO / "recipes").rglob("*.yaml"))
    assert first_column(out) == files
    assert "13,787,650" in out  # recipes/ptb/lstm.yaml


def test_train_a_folder_of_recipes_then_compare(tmp_path, tiny_corpus):
    folder = tmp_path / "zoo-recipes"
    folder.mkdir()
    for name, hidden in (("big", 16), ("small", 8)):
        recipe = {
            **TINY_RECIPE,
            "model": {**TINY_RECIPE["model"], "cell": {"kind": "lstm", "hidden_dim": hidden}},
        }
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(recipe))
    args = (
        "train",
        folder,
        "--set",
        "train.max_steps=4",
        "--runs-dir",
        tmp_path / "zoo",
        "--device",
        "cpu",
    )
    result, out = invoke(*args)
    assert result.exit_code == 0, out
    assert sorted(p.name for p in (tmp_path / "zoo").iterdir()) == ["big-tiny", "small-tiny"]
    assert "compared:" in out and out.count("finished") == 2
    for run in (tmp_path / "zoo").iterdir():
        assert not (run / "running.json").exists()
        assert json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])["kind"] == "end"

    result, out = invoke(*args)  # the runs exist: refused before any training
    assert result.exit_code == 2 and "already exists" in out and "--force" in out
    result, out = invoke("train", folder, "--run-dir", tmp_path / "one")
    assert result.exit_code == 2 and out.count("error:") == 1


def test_train_several_recipes_reports_every_bad_one_first(tmp_path, tiny_corpus):
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(TINY_RECIPE))
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**TINY_RECIPE, "train": {**TINY_RECIPE["train"], "lr": 1}}))
    result, out = invoke("train", good, bad, "--runs-dir", tmp_path / "zoo")
    assert result.exit_code == 2 and "bad.yaml" in out and "train.lr" in out
    assert not (tmp_path / "zoo").exists()


def test_a_failing_recipe_does_not_stop_the_others(tmp_path, tiny_corpus):
    folder = tmp_path / "zoo-recipes"
    folder.mkdir()
    diverging = {
        **TINY_RECIPE,
        "train": {**TINY_RECIPE["train"], "optimizer": {"name": "sgd", "lr": 1e38}},
    }
    (folder / "a-diverges.yaml").write_text(yaml.safe_dump(diverging))
    (folder / "b-fine.yaml").write_text(yaml.safe_dump(TINY_RECIPE))
    result, out = invoke(
        "train", folder, "--set", "train.max_steps=3", "--runs-dir", tmp_path / "zoo"
    )
    assert result.exit_code == 1, out
    assert "a-diverges.yaml: loss became" in out and "1 of 2 recipes failed" in out
    said = out.index("a-diverges.yaml: loss became")
    assert said < out.index("going on with the next recipe") < out.index("b-fine-tiny")
    assert re.search(r"b-fine-tiny\s+│\s+finished", out)
    assert re.search(r"a-diverges-tiny\s+│\s+failed", out)


def test_compare_shows_the_seed_groups_with_every_budget(tmp_path):
    for seed in (0, 1):
        path = make_run(tmp_path, f"lstm-s{seed}", valid=[(10, 640, 1.0, 2.0 + seed / 10)])
        config = yaml.safe_load((path / "config.yaml").read_text())
        (path / "config.yaml").write_text(yaml.safe_dump({**config, "seed": seed}))
    result, out = invoke("compare", tmp_path)
    assert result.exit_code == 0, out
    assert re.search(r"lstm\s+│\s+lstm\s+│\s+2\s+│\s+2.0500 ± 0.0707\s+│\s+2.0500 ± 0.0707", out)
    assert "judged on valid final" in out


def test_train_warns_in_one_line_when_the_recipes_budgets_differ(tmp_path, tiny_corpus):
    folder = tmp_path / "zoo-recipes"
    folder.mkdir()
    steps = {**TINY_RECIPE, "train": {**TINY_RECIPE["train"], "max_steps": 2}}
    tokens = {
        **TINY_RECIPE,
        "train": {**TINY_RECIPE["train"], "max_steps": None, "max_tokens": 128},
    }
    (folder / "by-steps.yaml").write_text(yaml.safe_dump(steps))
    (folder / "by-tokens.yaml").write_text(yaml.safe_dump(tokens))
    result, out = invoke("train", folder, "--runs-dir", tmp_path / "zoo", "--device", "cpu")
    assert result.exit_code == 0, out
    (warning,) = [line for line in out.splitlines() if "budgets differ" in line]
    assert "by-steps.yaml: 2 steps" in warning and "by-tokens.yaml: 128 tokens" in warning
    assert "--set train.max_tokens=N" in warning
    equal = ["--set", "train.max_tokens=128", "--set", "train.max_steps=null", "--force"]
    result, out = invoke("train", folder, "--runs-dir", tmp_path / "zoo", *equal)
    assert result.exit_code == 0 and "budgets differ" not in out
