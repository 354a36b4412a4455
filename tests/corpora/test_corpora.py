"""The corpus registry and prepare_corpus()."""

from __future__ import annotations

import pytest

from lstmlab.corpora import CORPORA, PrepareRequest, prepare_corpus
from lstmlab.errors import UsageError


def test_registry_names_every_corpus_module():
    assert list(CORPORA) == ["ptb", "enwik8", "text", "builtin", "hf"]
    for kind, spec in CORPORA.items():
        assert spec.prepare.__module__ == f"lstmlab.corpora.{kind}"
        assert spec.summary and spec.source
    with pytest.raises(TypeError):
        CORPORA["new"] = CORPORA["text"]  # read-only


def test_unknown_kind_lists_the_known_ones(tmp_path):
    with pytest.raises(UsageError, match="unknown corpus 'wiki'") as info:
        prepare_corpus("wiki", PrepareRequest(data_dir=tmp_path))
    assert info.value.hint == "choose one of: ptb, enwik8, text, builtin, hf"


def test_prepare_corpus_dispatches(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("hello world, " * 20, encoding="utf-8")
    corpus = prepare_corpus("text", PrepareRequest(data_dir=tmp_path / "data", inputs=(str(path),)))
    assert corpus.name == "text" and corpus.vocab_size == len(set("hello world, "))


@pytest.mark.parametrize("name", ["", ".hidden", "a/b", "..", "downloads", "sp ace"])
def test_folder_names_are_checked(tmp_path, name):
    with pytest.raises(UsageError, match="cannot be a corpus name"):
        PrepareRequest(data_dir=tmp_path, name=name).folder_name("text")
