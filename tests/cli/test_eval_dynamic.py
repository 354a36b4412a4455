"""`lstmlab eval --dynamic`: both figures in the table and in eval.json; bad overrides are one line."""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from lstmlab.cli.app import app

from support import TINY_RECIPE, TINY_TEXT

runner = CliRunner()


def invoke(*args):
    result = runner.invoke(app, [str(a) for a in args], catch_exceptions=False)
    return result, result.output


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny trained run shared by this file's tests (its corpus in its own data dir)."""
    root = tmp_path_factory.mktemp("dyn")
    text = root / "book.txt"
    text.write_text(TINY_TEXT, encoding="utf-8")
    data = root / "data"
    assert invoke("prepare", "text", text, "--name", "tiny", "--data-dir", data)[0].exit_code == 0
    recipe = root / "tiny.yaml"
    recipe.write_text(
        yaml.safe_dump({**TINY_RECIPE, "data": {"corpus": "tiny", "data_dir": str(data)}})
    )
    run = root / "runs" / "r1"
    result, out = invoke("train", recipe, "--run-dir", run, "--device", "cpu")
    assert result.exit_code == 0, out
    return run


def test_eval_dynamic_records_static_and_dynamic(trained):
    result, out = invoke(
        "eval", trained, "--dynamic", "--dyn-lr", "1e-3", "--ms-tokens", "400", "--device", "cpu"
    )
    assert result.exit_code == 0, out
    test = json.loads((trained / "eval.json").read_text())["splits"]["test"]
    dyn = test["dynamic"]
    assert 0 < dyn["bpc"] < 8 and dyn["tokens"] == test["tokens"] and dyn["chars"] == test["chars"]
    assert dyn["gain_bpc"] == pytest.approx(test["bpc"] - dyn["bpc"])
    assert dyn["settings"]["lr"] == 1e-3 and dyn["settings"]["ms_tokens"] == 400
    assert (
        dyn["settings"]["segment_len"] == 5
    )  # the paper's default, from the recipe's eval.dynamic


def test_eval_dynamic_bad_override_is_one_line(trained):
    result, out = invoke("eval", trained, "--dynamic", "--dyn-decay", "2", "--device", "cpu")
    assert result.exit_code == 2
    assert "--dyn-decay" in out and "Traceback" not in out and out.count("error:") == 1
    result, out = invoke("eval", trained, "--segment-len", "3", "--device", "cpu")
    assert result.exit_code == 2 and "--dynamic" in out and "Traceback" not in out
