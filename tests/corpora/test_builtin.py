"""builtin: CPython's pydoc topics (and optionally stdlib docstrings) as an offline corpus."""

from __future__ import annotations

import platform
from pydoc_data import topics

import pytest

from lstmlab.corpora import PrepareRequest, builtin
from lstmlab.errors import UsageError

TOPICS = "\n\n".join(topics.topics[key] for key in sorted(topics.topics))


def test_topics_corpus(tmp_path):
    corpus = builtin.prepare(PrepareRequest(data_dir=tmp_path / "data"))
    assert corpus.path == tmp_path / "data" / "builtin"
    assert sum(info.tokens for info in corpus.meta.splits.values()) == len(TOPICS)
    assert corpus.tokenizer.symbols == sorted(set(TOPICS))
    assert corpus.meta.splits["train"].tokens == int(len(TOPICS) * 0.9)
    assert corpus.tokenizer.decode(corpus.tokens("test")) == TOPICS[int(len(TOPICS) * 0.95) :]
    assert corpus.meta.extra["python_version"] == platform.python_version()
    assert list(corpus.meta.sources) == ["pydoc_data/topics.py"]
    assert len(TOPICS) > 100_000 and corpus.vocab_size > 50


def test_deterministic(tmp_path):
    first = builtin.prepare(PrepareRequest(data_dir=tmp_path / "a"))
    second = builtin.prepare(PrepareRequest(data_dir=tmp_path / "b", name="again"))
    assert first.meta.splits == second.meta.splits


def test_with_docstrings_reads_sorted_modules_and_skips_tests(tmp_path, monkeypatch):
    lib = tmp_path / "lib"
    (lib / "pkg").mkdir(parents=True)
    (lib / "test").mkdir()
    (lib / "zeta.py").write_text('"""Zeta docs."""\n', encoding="utf-8")
    (lib / "alpha.py").write_text('"""Alpha docs."""\nimport nothing_at_all\n', encoding="utf-8")
    (lib / "pkg" / "__init__.py").write_text('"""Package docs."""\n', encoding="utf-8")
    (lib / "nodoc.py").write_text("x = 1\n", encoding="utf-8")
    (lib / "broken.py").write_text('"""Broken docs."""\ndef (:\n', encoding="utf-8")
    (lib / "test" / "test_x.py").write_text('"""Test docs."""\n', encoding="utf-8")
    monkeypatch.setattr(builtin, "stdlib_dir", lambda: lib)
    corpus = builtin.prepare(
        PrepareRequest(
            data_dir=tmp_path / "data",
            options={"with_docstrings": True, "fractions": (0.98, 0.01, 0.01)},
        )
    )
    whole = "".join(corpus.tokenizer.decode(corpus.tokens(s)) for s in ("train", "valid", "test"))
    assert whole == TOPICS + "\n\nAlpha docs.\n\nPackage docs.\n\nZeta docs."
    assert corpus.meta.extra["with_docstrings"] is True
    assert sorted(corpus.meta.sources) == [
        "pydoc_data/topics.py",
        "stdlib/alpha.py",
        "stdlib/broken.py",
        "stdlib/nodoc.py",
        "stdlib/pkg/__init__.py",
        "stdlib/zeta.py",
    ]


def test_real_stdlib_docstrings_skip_test_suites():
    docs, sources = builtin.stdlib_docstrings(builtin.stdlib_dir())
    assert len(docs) > 50_000
    assert not any(
        f"/{skip}/" in f"/{name}"
        for name in sources
        for skip in ("test", "idlelib", "site-packages")
    )


def test_takes_no_source_or_files(tmp_path):
    with pytest.raises(UsageError, match="reads no --source"):
        builtin.prepare(PrepareRequest(data_dir=tmp_path, source=tmp_path))
    with pytest.raises(UsageError, match="takes no FILE arguments"):
        builtin.prepare(PrepareRequest(data_dir=tmp_path, inputs=("x.txt",)))
