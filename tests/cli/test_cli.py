"""The CLI end to end with typer's CliRunner: prepare -> train -> eval -> sample, and bad inputs."""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from lstmlab import __version__
from lstmlab.cli.app import app

from support import TINY_RECIPE, TINY_TEXT

runner = CliRunner()


def invoke(*args):
    result = runner.invoke(app, [str(a) for a in args], catch_exceptions=False)
    return result, result.output


def one_line_error(output: str) -> bool:
    return "Traceback" not in output and output.count("error:") == 1


def test_version_and_help():
    assert invoke("--version")[1].strip() == f"lstmlab {__version__}"
    _, out = invoke("--help")
    for command in ("prepare", "train", "eval", "sample"):
        assert command in out


@pytest.fixture
def prepared(tmp_path):
    text = tmp_path / "book.txt"
    text.write_text(TINY_TEXT, encoding="utf-8")
    result, out = invoke("prepare", "text", text, "--name", "tiny")
    assert result.exit_code == 0, out
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(TINY_RECIPE))
    return recipe


def test_prepare_train_eval_sample(prepared, tmp_path):
    run = tmp_path / "runs" / "r1"
    result, out = invoke(
        "train", prepared, "--run-dir", run, "--set", "train.max_steps=8", "--device", "cpu"
    )
    assert result.exit_code == 0, out
    assert "valid bpc" in out and (run / "checkpoints" / "last.pt").is_file()

    result, out = invoke("eval", run, "--split", "all", "--device", "cpu")
    assert result.exit_code == 0, out
    report = json.loads((run / "eval.json").read_text())
    for split in ("valid", "test"):
        assert 0 < report["splits"][split]["bpc"] < 8
        assert report["splits"][split]["perplexity"] == pytest.approx(
            2 ** report["splits"][split]["bpc"]
        )

    result, out = invoke("eval", run, "--tune-temperature", "--device", "cpu")
    assert result.exit_code == 0, out
    tuned = json.loads((run / "eval.json").read_text())["tuned_temperature"]
    assert 0.8 <= tuned["temperature"] <= 1.0 and len(tuned["valid_bpc"]) == 11
    assert tuned["test_bpc_untuned"] == pytest.approx(report["splits"]["test"]["bpc"], abs=1e-5)
    assert "best on valid" in out

    result, out = invoke(
        "sample", run, "--prime", "the ", "--length", "40", "--seed", "3", "--device", "cpu"
    )
    assert result.exit_code == 0, out
    assert out.startswith("the ") and len(out) >= 44
    again = invoke(
        "sample", run, "--prime", "the ", "--length", "40", "--seed", "3", "--device", "cpu"
    )[1]
    assert again == out
    greedy = invoke(
        "sample", run, "--prime", "the ", "--length", "20", "--temperature", "0", "--top-k", "3"
    )[0]
    assert greedy.exit_code == 0

    # resume continues to a larger budget
    result, out = invoke("train", "--resume", run, "--set", "train.max_steps=12")
    assert result.exit_code == 0, out
    assert "step 12" in out


def test_bad_inputs_give_one_line_errors(prepared, tmp_path):
    run = tmp_path / "runs" / "r2"
    cases = [
        (("train", tmp_path / "missing.yaml"), 2, "does not exist"),
        (("train", prepared, "--set", "train.lrr=1"), 2, "unknown key"),
        (("train", prepared, "--set", "train.bptt=0"), 2, "train.bptt"),
        (("train", prepared, "--set", "data.corpus=nope"), 1, "not prepared"),
        (("train", prepared, "--set", "oops"), 2, "key.path=value"),
        (("train",), 2, "no recipe"),
        (("eval", tmp_path / "no-run"), 1, "does not exist"),
        (("sample", tmp_path / "no-run"), 1, "does not exist"),
        (("prepare", "nosuchcorpus"), 2, "nosuchcorpus"),
    ]
    for args, code, needle in cases:
        result, out = invoke(*args)
        assert result.exit_code == code, (args, out)
        assert needle in out and one_line_error(out), (args, out)

    assert (
        invoke("train", prepared, "--run-dir", run, "--set", "train.max_steps=2")[0].exit_code == 0
    )
    result, out = invoke("train", prepared, "--run-dir", run, "--set", "train.max_steps=2")
    assert result.exit_code == 2 and "already exists" in out and one_line_error(out)
    assert (
        invoke("train", prepared, "--run-dir", run, "--set", "train.max_steps=2", "--force")[
            0
        ].exit_code
        == 0
    )

    result, out = invoke("sample", run, "--prime", "héllo ∆")
    assert (
        result.exit_code == 1
        and "outside the vocabulary" in out
        and "'∆'" in out
        and one_line_error(out)
    )
    for bad in (("--length", "-1"), ("--temperature", "-2"), ("--top-p", "2")):
        result, out = invoke("sample", run, *bad)
        assert result.exit_code == 2 and one_line_error(out), (bad, out)

    ckpt = run / "checkpoints" / "best.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:100])
    result, out = invoke("eval", ckpt)
    assert result.exit_code == 1 and "corrupt" in out and one_line_error(out)
    # the run's other checkpoint is intact and still usable
    assert invoke("eval", run, "--checkpoint", "last")[0].exit_code == 0


def test_eval_refuses_a_corpus_with_another_vocabulary(prepared, tmp_path):
    run = tmp_path / "runs" / "r3"
    assert (
        invoke("train", prepared, "--run-dir", run, "--set", "train.max_steps=2")[0].exit_code == 0
    )
    other = tmp_path / "other.txt"
    other.write_text("completely different symbols 0123456789 " * 50, encoding="utf-8")
    assert invoke("prepare", "text", other, "--name", "tiny", "--force")[0].exit_code == 0
    result, out = invoke("eval", run)
    assert result.exit_code == 1 and "another vocabulary" in out and one_line_error(out)
