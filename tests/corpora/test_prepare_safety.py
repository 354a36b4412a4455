"""`prepare` never deletes what is not an lstmlab corpus, nor the files it reads (issue 14)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from lstmlab.cli.prepare import prepare_cmd
from lstmlab.corpora import PrepareRequest, prepare_corpus, store
from lstmlab.errors import UsageError
from lstmlab.subword import MODEL_FILE, SubwordOptions
from lstmlab.tokenizers import ByteTokenizer

from support import TINY_TEXT

BOOK = "It was the best of times, it was the worst of times.\n" * 40


@pytest.fixture
def invoke():
    app = typer.Typer()
    app.command("prepare")(prepare_cmd)

    @app.callback()
    def main() -> None:
        """lstmlab (test app)."""

    runner = CliRunner()

    def run(*args):
        result = runner.invoke(app, ["prepare", *map(str, args)])
        return result, " ".join(result.output.split())

    return run


def snapshot(folder):
    """Every file under `folder` with its bytes: what must survive a refused prepare."""
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def test_input_inside_the_target_survives(invoke, tmp_path):
    # the example: mkdir -p data/book && cp book.txt data/book/ && prepare ... --name book
    book = tmp_path / "data" / "book" / "book.txt"
    book.parent.mkdir(parents=True)
    book.write_text(BOOK, encoding="utf-8")
    for extra in ((), ("--force",)):
        result, out = invoke("text", book, "--name", "book", *extra)
        assert result.exit_code == 2, out
        assert out.count("error:") == 1 and "hint:" in out and "Traceback" not in out
        assert "lies inside" in out and "never deletes what it reads" in out
        assert book.read_text(encoding="utf-8") == BOOK
        assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["book"]  # no temp left


def test_user_folder_is_refused_even_with_force(invoke, tmp_path):
    book = tmp_path / "book.txt"
    book.write_text(BOOK, encoding="utf-8")
    mine = tmp_path / "data" / "book"
    (mine / "sub").mkdir(parents=True)
    (mine / "notes.md").write_text("mine")
    (mine / "sub" / "x.bin").write_bytes(b"\x00\x01")
    before = snapshot(mine)
    for extra in ((), ("--force",)):
        result, out = invoke("text", book, "--name", "book", *extra)
        assert result.exit_code == 2, out
        assert "is not an lstmlab corpus" in out and "another --name" in out
        assert snapshot(mine) == before


@pytest.mark.parametrize("kind", ["file", "symlink-to-corpus", "dangling-symlink"])
def test_file_or_symlink_in_place_is_refused(invoke, tmp_path, kind):
    book = tmp_path / "book.txt"
    book.write_text(BOOK, encoding="utf-8")
    data = tmp_path / "data"
    data.mkdir()
    target = data / "book"
    if kind == "file":
        target.write_text("precious")
    elif kind == "symlink-to-corpus":
        store.write_corpus(tmp_path / "elsewhere", "real", ByteTokenizer(), _splits())
        target.symlink_to(tmp_path / "elsewhere" / "real")
    else:
        target.symlink_to(tmp_path / "nowhere")
    before = snapshot(tmp_path / "elsewhere") if kind == "symlink-to-corpus" else None
    result, out = invoke("text", book, "--name", "book", "--force")
    assert result.exit_code == 2, out
    assert "prepare never replaces it" in out
    assert os.path.lexists(target)
    if kind == "file":
        assert target.read_text() == "precious"
    else:
        assert target.is_symlink()
    if before is not None:
        assert snapshot(tmp_path / "elsewhere") == before


def test_existing_corpus_needs_force_then_is_replaced(invoke, tmp_path):
    first, second = tmp_path / "a.txt", tmp_path / "b.txt"
    first.write_text(BOOK, encoding="utf-8")
    second.write_text(BOOK.upper(), encoding="utf-8")
    assert invoke("text", first, "--name", "book")[0].exit_code == 0
    result, out = invoke("text", second, "--name", "book")
    assert result.exit_code == 2, out
    assert "corpus 'book' already exists" in out and "--force" in out
    assert store.open_corpus(tmp_path / "data", "book").meta.extra["files"] == [str(first)]
    result, out = invoke("text", second, "--name", "book", "--force")
    assert result.exit_code == 0, out
    corpus = store.open_corpus(tmp_path / "data", "book")
    assert corpus.meta.extra["files"] == [str(second)]
    assert corpus.tokenizer.decode(corpus.tokens("train")[:5].tolist()) == BOOK.upper()[:5]
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["book"]  # old one gone


def test_corpus_holding_a_user_file_is_not_replaced(tmp_path):
    store.write_corpus(tmp_path / "data", "c", ByteTokenizer(), _splits())
    (tmp_path / "data" / "c" / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match=r"also holds files prepare did not write \(notes.txt\)"):
        store.write_corpus(tmp_path / "data", "c", ByteTokenizer(), _splits(), replace=True)
    assert (tmp_path / "data" / "c" / "notes.txt").read_text() == "mine"
    assert store.open_corpus(tmp_path / "data", "c").meta.splits["train"].tokens == 50


def test_damaged_manifest_is_not_a_corpus(tmp_path):
    store.write_corpus(tmp_path, "c", ByteTokenizer(), _splits())
    (tmp_path / "c" / "meta.json").write_text("{torn")
    assert not store.is_corpus_dir(tmp_path / "c")
    with pytest.raises(UsageError, match="is not an lstmlab corpus"):
        store.write_corpus(tmp_path, "c", ByteTokenizer(), _splits(), replace=True)
    assert (tmp_path / "c" / "train.bin").is_file()


def test_empty_folder_is_used(tmp_path):
    (tmp_path / "c").mkdir()
    corpus = store.write_corpus(tmp_path, "c", ByteTokenizer(), _splits())
    assert corpus.path == tmp_path / "c" and store.is_corpus_dir(corpus.path)


def test_refused_before_any_download(tmp_path):
    (tmp_path / "data" / "ptb").mkdir(parents=True)
    (tmp_path / "data" / "ptb" / "mine.txt").write_text("x")

    def opener(*_args, **_kwargs):
        raise AssertionError("prepare downloaded before checking its target")

    with pytest.raises(UsageError, match="is not an lstmlab corpus"):
        prepare_corpus("ptb", PrepareRequest(data_dir=tmp_path / "data", opener=opener, force=True))
    assert not (tmp_path / "data" / "downloads").exists()


def test_folder_appearing_during_prepare_is_left_alone(tmp_path, monkeypatch):
    """The target is checked again at the rename: a folder made meanwhile is never replaced."""
    data = tmp_path / "data"
    real_count = store.count_chars

    def make_folder_meanwhile(ids, char_len):
        (data / "c").mkdir(exist_ok=True)
        (data / "c" / "late.txt").write_text("mine")
        return real_count(ids, char_len)

    monkeypatch.setattr(store, "count_chars", make_folder_meanwhile)
    with pytest.raises(UsageError, match="is not an lstmlab corpus"):
        store.write_corpus(data, "c", ByteTokenizer(), _splits())
    assert (data / "c" / "late.txt").read_text() == "mine"
    assert sorted(p.name for p in data.iterdir()) == ["c"]  # the partial folder is gone


def test_data_dir_that_is_a_file(invoke, tmp_path):
    book = tmp_path / "book.txt"
    book.write_text(BOOK, encoding="utf-8")
    (tmp_path / "datafile").write_text("x")
    result, out = invoke("text", book, "--data-dir", tmp_path / "datafile")
    assert result.exit_code == 2 and "is not a folder" in out and "Traceback" not in out
    result, out = invoke(
        "text", book, "--data-dir", tmp_path / "datafile", "--tokenizer", "sentencepiece"
    )
    assert result.exit_code == 2 and "is not a folder" in out and "Traceback" not in out
    assert (tmp_path / "datafile").read_text() == "x"


def test_sentencepiece_obeys_the_same_rules(tmp_path):
    book = tmp_path / "book.txt"
    book.write_text(TINY_TEXT, encoding="utf-8")
    sub = SubwordOptions(vocab_size=300)
    data = tmp_path / "data"

    def prepare(**kwargs):
        request = PrepareRequest(data_dir=data, inputs=(str(book),), name="book", **kwargs)
        return prepare_corpus("text", request, sub)

    mine = data / "book"
    mine.mkdir(parents=True)
    (mine / "notes.md").write_text("mine")
    with pytest.raises(UsageError, match="is not an lstmlab corpus"):
        prepare(force=True)
    assert (mine / "notes.md").read_text() == "mine"
    assert sorted(p.name for p in data.iterdir()) == ["book"]  # staging removed
    (mine / "notes.md").unlink()
    first = prepare()
    assert (first.path / MODEL_FILE).is_file()
    with pytest.raises(UsageError, match="corpus 'book' already exists"):
        prepare()
    again = prepare(force=True)
    assert again.tokenizer.kind == "sentencepiece"
    assert sorted(p.name for p in data.iterdir()) == ["book"]
    # the input inside the target: refused before sentencepiece is trained
    inside = mine / "book.txt"
    inside.write_text(BOOK, encoding="utf-8")
    with pytest.raises(UsageError, match="lies inside"):
        prepare_corpus(
            "text",
            PrepareRequest(data_dir=data, inputs=(str(inside),), name="book", force=True),
            sub,
        )
    assert inside.read_text(encoding="utf-8") == BOOK


def test_corpus_files_match_what_the_store_and_subword_write(tmp_path):
    corpus = store.write_corpus(tmp_path, "c", ByteTokenizer(), _splits())
    assert {p.name for p in corpus.path.iterdir()} | {MODEL_FILE} == set(store.CORPUS_FILES)
    assert json.loads((corpus.path / store.META).read_text())["name"] == "c"


def _splits() -> dict[str, np.ndarray]:
    return {s: np.arange(50 + i, dtype=np.int64) % 256 for i, s in enumerate(store.SPLITS)}
