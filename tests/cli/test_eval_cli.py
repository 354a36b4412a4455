"""`lstmlab eval` / `sample` as commands: from any directory, --checkpoint best|last|PATH, eval.json."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from lstmlab.cli.app import app

from fake_checkpoints import make_checkpoint, tiny_corpus_at

runner = CliRunner()


def invoke(*args):
    result = runner.invoke(app, [str(a) for a in args])
    return result, result.output


def one_line_error(output: str) -> bool:
    return "Traceback" not in output and output.count("error:") == 1


@pytest.fixture
def run(tmp_path, monkeypatch):
    """A run folder with best.pt (step 6) on a corpus in tmp/data; the command runs from tmp/cwd."""
    monkeypatch.delenv("LSTMLAB_DATA_DIR", raising=False)
    corpus = tiny_corpus_at(tmp_path / "data")
    run = tmp_path / "runs" / "r"
    make_checkpoint(run, corpus, step=6)
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    return run


def test_eval_from_another_directory_writes_the_checkpoint_step(run):
    result, out = invoke("eval", run.resolve(), "--split", "all", "--device", "cpu")
    assert result.exit_code == 0, out
    assert "(step 6)" in out and "wrote" in out
    report = json.loads((run / "eval.json").read_text())
    assert (report["step"], report["which"]) == (6, "best")
    assert set(report["splits"]) == {"valid", "test"}


def test_help_shows_the_checkpoint_choices():
    for command in ("eval", "sample"):  # wide enough that the metavar is not wrapped
        result = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0 and "[best|last|PATH]" in result.output


def test_a_missing_best_names_last_and_never_falls_back(run):
    (run / "checkpoints" / "best.pt").rename(run / "checkpoints" / "last.pt")
    for command in ("eval", "sample"):
        result, out = invoke(command, run, "--device", "cpu")
        assert result.exit_code == 1 and one_line_error(out), out
        assert "no best.pt" in out and "--checkpoint last" in out
    result, out = invoke("eval", run, "--checkpoint", "last", "--device", "cpu")
    assert result.exit_code == 0, out
    assert json.loads((run / "eval.json").read_text())["which"] == "last"
    result, out = invoke("sample", run, "--checkpoint", "last", "--length", "5", "--prime", "the")
    assert result.exit_code == 0 and result.stdout.startswith("the"), out


def test_a_typo_in_checkpoint_is_a_usage_error(run):
    result, out = invoke("eval", run, "--checkpoint", "bset")
    assert result.exit_code == 2 and one_line_error(out) and "best, last" in out


def test_a_foreign_eval_json_is_replaced(run):
    (run / "eval.json").write_text('["not", "ours"]')
    result, out = invoke("eval", run, "--device", "cpu")
    assert result.exit_code == 0, out
    assert json.loads((run / "eval.json").read_text())["splits"]["test"]["bpc"] > 0


def test_a_damaged_corpus_meta_is_one_line(run, tmp_path):
    meta = tmp_path / "data" / "tiny" / "meta.json"
    data = json.loads(meta.read_text())
    meta.write_text(json.dumps({**data, "splits": ["train", "valid", "test"]}))
    result, out = invoke("eval", run, "--device", "cpu")
    assert result.exit_code == 1 and one_line_error(out) and "meta.json" in out, out


def test_a_changed_corpus_is_refused_with_a_hint(run, tmp_path):
    from support import TINY_TEXT

    tiny_corpus_at(tmp_path / "data", text=TINY_TEXT[::-1])
    result, out = invoke("eval", run, "--device", "cpu")
    assert result.exit_code == 1 and one_line_error(out), out
    assert "changed since" in out and "--data-dir" in out and "lstmlab prepare" in out


def test_sample_streams_a_long_prime_file(run, tmp_path):
    prime = tmp_path / "prime.txt"
    prime.write_text("the quick brown fox " * 2000, encoding="utf-8")
    result, out = invoke("sample", run, "--prime-file", prime, "--length", "10", "--seed", "2")
    assert result.exit_code == 0, out
    assert out.startswith("the quick brown fox ") and len(out) == 40_000 + 10 + 1
