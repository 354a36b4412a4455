"""text: local UTF-8 files, contiguous fraction split, the whole text's characters as vocabulary."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from lstmlab.corpora import PrepareRequest, text
from lstmlab.errors import CorpusError, UsageError

SAMPLE = "".join(f"line {i}: the quick brown fox jumps over the lazy dog.\n" for i in range(40))


def prepare(tmp_path, *files, **kwargs):
    return text.prepare(
        PrepareRequest(data_dir=tmp_path / "data", inputs=tuple(str(f) for f in files), **kwargs)
    )


def decoded(corpus, split):
    return corpus.tokenizer.decode(corpus.tokens(split))


def test_contiguous_default_split_and_vocabulary(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text(SAMPLE, encoding="utf-8")
    corpus = prepare(tmp_path, path)
    n = len(SAMPLE)
    assert corpus.path == tmp_path / "data" / "text"
    assert [corpus.meta.splits[s].tokens for s in ("train", "valid", "test")] == [
        int(n * 0.9),
        int(n * 0.95) - int(n * 0.9),
        n - int(n * 0.95),
    ]
    assert decoded(corpus, "train") + decoded(corpus, "valid") + decoded(corpus, "test") == SAMPLE
    assert corpus.tokenizer.symbols == sorted(set(SAMPLE))
    assert corpus.meta.sources == {str(path): hashlib.sha256(SAMPLE.encode()).hexdigest()}
    assert corpus.meta.extra["fractions"] == [0.9, 0.05, 0.05]


def test_files_are_joined_with_a_newline_and_fractions_apply(tmp_path):
    first, second = tmp_path / "one.txt", tmp_path / "two.txt"
    first.write_text("alpha beta", encoding="utf-8")
    second.write_text("gamma δέλτα ✓", encoding="utf-8")
    corpus = prepare(tmp_path, first, second, name="mine", options={"fractions": (0.5, 0.25, 0.25)})
    whole = "alpha beta\ngamma δέλτα ✓"
    assert corpus.name == "mine"
    assert decoded(corpus, "train") == whole[: len(whole) // 2]
    assert "".join(decoded(corpus, s) for s in ("train", "valid", "test")) == whole
    assert len(corpus.meta.sources) == 2


def test_more_than_256_characters_use_uint16(tmp_path):
    path = tmp_path / "wide.txt"
    path.write_text("".join(chr(0x4E00 + i) for i in range(300)) * 2, encoding="utf-8")
    corpus = prepare(tmp_path, path)
    assert corpus.vocab_size == 300 and corpus.meta.dtype == "<u2"
    assert corpus.tokens("train").dtype == np.dtype("<u2")


def test_non_utf8_names_the_file_and_byte_offset(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("café au lait".encode("latin-1"))
    with pytest.raises(CorpusError, match=r"latin1.txt is not UTF-8 text: byte 3 is b'\\xe9'"):
        prepare(tmp_path, path)
    assert not (tmp_path / "data").exists()


def test_empty_file_and_too_short_text(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    with pytest.raises(CorpusError, match="empty.txt is empty"):
        prepare(tmp_path, empty)
    short = tmp_path / "short.txt"
    short.write_text("abcdefghij", encoding="utf-8")
    with pytest.raises(CorpusError, match=r"has 10 characters, too few to split .* 9/0/1"):
        prepare(tmp_path, short)


@pytest.mark.parametrize(
    "fractions",
    [(0.8, 0.1, 0.05), (1.0, 0.0, 0.0), (1.1, -0.05, -0.05), (0.5, 0.5), (0.9, float("nan"), 0.05)],
)
def test_bad_fractions_are_usage_errors(tmp_path, fractions):
    path = tmp_path / "a.txt"
    path.write_text(SAMPLE, encoding="utf-8")
    with pytest.raises(UsageError, match="not three positive numbers summing to 1"):
        prepare(tmp_path, path, options={"fractions": fractions})


def test_parse_fractions():
    assert text.parse_fractions("0.8,0.1,0.1") == (0.8, 0.1, 0.1)
    with pytest.raises(UsageError, match="not three comma-separated numbers"):
        text.parse_fractions("0.8;0.1;0.1")
    with pytest.raises(UsageError, match="summing to 1"):
        text.parse_fractions("0.8,0.1")


def test_bad_arguments(tmp_path):
    with pytest.raises(UsageError, match="needs at least one FILE"):
        prepare(tmp_path)
    with pytest.raises(UsageError, match="missing.txt does not exist"):
        prepare(tmp_path, tmp_path / "missing.txt")
    with pytest.raises(UsageError, match="is not a file"):
        prepare(tmp_path, tmp_path)
    path = tmp_path / "a.txt"
    path.write_text(SAMPLE, encoding="utf-8")
    with pytest.raises(UsageError, match="cannot be a corpus name"):
        prepare(tmp_path, path, name="../escape")
    with pytest.raises(UsageError, match="text does not take --with-docstrings"):
        prepare(tmp_path, path, options={"with_docstrings": True})


def test_source_can_name_the_one_file(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text(SAMPLE, encoding="utf-8")
    corpus = text.prepare(PrepareRequest(data_dir=tmp_path / "data", source=path))
    assert corpus.meta.splits["train"].tokens == int(len(SAMPLE) * 0.9)
