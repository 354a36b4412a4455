"""`lstmlab train` as a log file sees it: plain progress lines, validations, the summary."""

from __future__ import annotations

import yaml
from typer.testing import CliRunner

from lstmlab.cli.app import app

from support import TINY_RECIPE


def test_piped_training_prints_plain_lines_with_eta_and_validations(tiny_corpus, tmp_path):
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(TINY_RECIPE))
    result = CliRunner().invoke(
        app,
        [
            "train",
            str(recipe),
            "--run-dir",
            str(tmp_path / "r"),
            "--set",
            "train.max_steps=8",
            "--set",
            "train.eval_every=4",
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    logged = [line for line in lines if line.startswith("train 2/8 ")]
    assert logged and all(k in logged[0] for k in ("loss", "bpc", "tok/s", "lr", "elapsed", "ETA"))
    assert sum(line.startswith("step ") and "valid bpc" in line for line in lines) == 2
    assert "\x1b[" not in result.output  # no terminal control codes in a log
    assert "wall time" in result.output and "step time" in result.output


def test_dry_run_trains_nothing(tiny_corpus, tmp_path):
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(TINY_RECIPE))
    result = CliRunner().invoke(app, ["train", str(recipe), "--dry-run"])
    assert result.exit_code == 0 and "parameters:" in result.output
    assert not (tmp_path / "runs").exists()


def test_run_dir_dot_with_force_is_refused_and_nothing_is_deleted(tiny_corpus, tmp_path):
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(TINY_RECIPE))
    (tmp_path / "notes.txt").write_text("mine")
    result = CliRunner().invoke(app, ["train", str(recipe), "--run-dir", ".", "--force"])
    assert result.exit_code == 2 and "error:" in result.output and "Traceback" not in result.output
    assert (tmp_path / "notes.txt").read_text() == "mine" and recipe.is_file()


def test_runs_lists_newest_first_and_latest_is_accepted(tiny_corpus, tmp_path):
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(TINY_RECIPE))
    for name in ("first", "second"):
        args = ["train", str(recipe), "--run-dir", f"runs/{name}", "--set", "train.max_steps=2"]
        assert CliRunner().invoke(app, args).exit_code == 0
    result = CliRunner().invoke(app, ["runs"])
    assert result.exit_code == 0, result.output
    assert result.output.index("│ second") < result.output.index("│ first")
    assert "finished" in result.output and "lstm" in result.output
    sampled = CliRunner().invoke(app, ["sample", "latest", "--length", "5", "--seed", "1"])
    assert sampled.exit_code == 0, sampled.output
