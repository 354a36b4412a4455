"""`lstmlab prepare` through Typer's CliRunner on a tiny app (the real app module is assembled elsewhere)."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from lstmlab.cli.prepare import prepare_cmd
from lstmlab.corpora import CORPORA, store

TEXT = "It was the best of times, it was the worst of times.\n" * 20


@pytest.fixture
def invoke():
    app = typer.Typer()
    app.command("prepare")(prepare_cmd)

    @app.callback()
    def main() -> None:
        """lstmlab (test app)."""

    runner = CliRunner()
    return lambda *args: runner.invoke(app, ["prepare", *map(str, args)])


def test_text_prints_a_table(invoke, tmp_path):
    path = tmp_path / "book.txt"
    path.write_text(TEXT, encoding="utf-8")
    result = invoke("text", path, "--name", "book", "--fractions", "0.8,0.1,0.1")
    assert result.exit_code == 0, result.output
    corpus = store.open_corpus(tmp_path / "data", "book")  # $LSTMLAB_DATA_DIR from conftest
    assert corpus.meta.splits["train"].tokens == int(len(TEXT) * 0.8)
    assert f"book: vocabulary {corpus.vocab_size}" in result.output
    for split in ("train", "valid", "test"):
        assert split in result.output
    assert f"{int(len(TEXT) * 0.8):,}" in result.output
    assert "written to" in result.output


def test_data_dir_option(invoke, tmp_path):
    path = tmp_path / "book.txt"
    path.write_text(TEXT, encoding="utf-8")
    result = invoke("text", path, "--data-dir", tmp_path / "other")
    assert result.exit_code == 0, result.output
    assert store.open_corpus(tmp_path / "other", "text").vocab_size == len(set(TEXT))


def test_builtin(invoke, tmp_path):
    result = invoke("builtin")
    assert result.exit_code == 0, result.output
    assert store.open_corpus(tmp_path / "data", "builtin").meta.splits["valid"].tokens > 10_000


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("text", "missing.txt"), "missing.txt does not exist"),
        (("wiki",), "unknown corpus 'wiki'"),
        (
            ("text", "book.txt", "--fractions", "0.9,0.2"),
            "fractions 0.9, 0.2 are not three positive numbers summing to 1",
        ),
        (("ptb", "book.txt"), "ptb takes no FILE arguments"),
        (("ptb", "--source", "nowhere"), "--source nowhere does not exist"),
    ],
)
def test_errors_are_one_line_without_traceback(invoke, tmp_path, args, message):
    (tmp_path / "book.txt").write_text(TEXT, encoding="utf-8")
    result = invoke(*args)
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert f"error: {message}" in " ".join(result.output.split())
    assert not (tmp_path / "data").exists()


def test_corpus_error_exits_1(invoke, tmp_path):
    (tmp_path / "latin1.txt").write_bytes("naïve".encode("latin-1"))
    result = invoke("text", tmp_path / "latin1.txt")
    assert result.exit_code == 1
    assert "is not UTF-8 text: byte 2" in result.output and "Traceback" not in result.output


def test_help_lists_every_corpus(invoke):
    result = invoke("--help")
    assert result.exit_code == 0
    for kind in CORPORA:
        assert f"{kind}:" in result.output or f"{kind} FILE" in result.output
