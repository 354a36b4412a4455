"""The on-disk corpus format: write/open round trip, dtypes, and every way a corpus can go bad."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lstmlab.corpora import store
from lstmlab.errors import ChecksumError, CorpusError, UsageError
from lstmlab.tokenizers import ByteTokenizer, CharTokenizer


def small_splits(vocab_size: int, n: int = 100) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {split: rng.integers(0, vocab_size, size=n + i) for i, split in enumerate(store.SPLITS)}


def test_round_trip(tmp_path):
    tokenizer = CharTokenizer(list("\nabc_"), aliases={" ": "_"}, display={"_": " "})
    splits = small_splits(tokenizer.vocab_size)
    written = store.write_corpus(
        tmp_path, "tiny", tokenizer, splits, sources={"a.txt": "f" * 64}, extra={"k": 1}
    )
    corpus = store.open_corpus(tmp_path, "tiny")
    assert corpus.path == written.path == tmp_path / "tiny"
    assert corpus.meta == written.meta
    assert corpus.meta.dtype == "|u1" and corpus.vocab_size == 5
    for split, ids in splits.items():
        np.testing.assert_array_equal(corpus.tokens(split), ids)
        assert corpus.meta.splits[split].chars == ids.size
    assert corpus.tokenizer.decode([1, 4, 2]) == "a b"
    assert corpus.meta.sources == {"a.txt": "f" * 64} and corpus.meta.extra == {"k": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny"]  # no temp folder left
    corpus.verify()


def test_vocabulary_over_256_is_uint16(tmp_path):
    tokenizer = CharTokenizer([chr(0x100 + i) for i in range(300)])
    splits = small_splits(300)
    splits["train"][0] = 299
    corpus = store.write_corpus(tmp_path, "wide", tokenizer, splits)
    assert corpus.meta.dtype == "<u2"
    assert (tmp_path / "wide" / "train.bin").stat().st_size == 2 * splits["train"].size
    np.testing.assert_array_equal(corpus.tokens("train"), splits["train"])


def test_rewrite_replaces_the_old_corpus_only_when_asked(tmp_path):
    store.write_corpus(tmp_path, "c", ByteTokenizer(), small_splits(256, 10))
    with pytest.raises(UsageError, match="corpus 'c' already exists") as info:
        store.write_corpus(tmp_path, "c", ByteTokenizer(), small_splits(256, 20))
    assert "--force" in info.value.hint
    assert store.open_corpus(tmp_path, "c").meta.splits["train"].tokens == 10
    corpus = store.write_corpus(tmp_path, "c", ByteTokenizer(), small_splits(256, 20), replace=True)
    assert corpus.meta.splits["train"].tokens == 20
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]


def test_ids_outside_the_vocabulary_leave_nothing(tmp_path):
    splits = small_splits(3)
    splits["test"][0] = 7
    with pytest.raises(CorpusError, match="ids outside the vocabulary"):
        store.write_corpus(tmp_path, "bad", CharTokenizer(list("abc")), splits)
    assert list(tmp_path.iterdir()) == []


def test_truncated_split_fails_when_read(tmp_path):
    corpus = store.write_corpus(tmp_path, "c", ByteTokenizer(), small_splits(256))
    path = tmp_path / "c" / "valid.bin"
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(
        ChecksumError, match="valid.bin has 98 bytes, its manifest says 101"
    ) as info:
        corpus.tokens("valid")
    assert "lstmlab prepare text FILE... --name c" in info.value.hint


def test_altered_split_fails_verification(tmp_path):
    corpus = store.write_corpus(tmp_path, "c", ByteTokenizer(), small_splits(256))
    path = tmp_path / "c" / "test.bin"
    data = bytearray(path.read_bytes())
    data[5] ^= 0xFF
    path.write_bytes(bytes(data))
    corpus.tokens("test")  # same size: reading alone cannot tell
    with pytest.raises(ChecksumError, match="test.bin does not match its checksum"):
        corpus.verify()


def test_missing_corpus_says_how_to_prepare_it(tmp_path):
    with pytest.raises(CorpusError, match="corpus 'ptb' is not prepared") as info:
        store.open_corpus(tmp_path, "ptb")
    assert "lstmlab prepare ptb" in info.value.hint


def test_other_format_version_is_refused(tmp_path):
    store.write_corpus(tmp_path, "c", ByteTokenizer(), small_splits(256))
    meta = tmp_path / "c" / "meta.json"
    data = json.loads(meta.read_text())
    data["format_version"] = 99
    meta.write_text(json.dumps(data))
    with pytest.raises(CorpusError, match="has corpus format 99"):
        store.open_corpus(tmp_path, "c")


def test_default_data_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("LSTMLAB_DATA_DIR", str(tmp_path / "elsewhere"))
    assert store.default_data_dir() == tmp_path / "elsewhere"
    monkeypatch.delenv("LSTMLAB_DATA_DIR")
    assert store.default_data_dir() == store.Path("data")


@pytest.mark.parametrize(
    "damage",
    [
        lambda m: [m],
        lambda m: {**m, "splits": [1, 2]},
        lambda m: {
            **m,
            "splits": {**m["splits"], "train": {**m["splits"]["train"], "tokens": None}},
        },
        lambda m: {
            **m,
            "splits": {**m["splits"], "train": {**m["splits"]["train"], "tokens": "12"}},
        },
        lambda m: {**m, "dtype": "nonsense"},
        lambda m: {**m, "dtype": 7},
        lambda m: {**m, "tokenizer": "char"},
        lambda m: {**m, "tokenizer": {"kind": "char"}},
        lambda m: {k: v for k, v in m.items() if k != "name"},
        lambda m: {**m, "format_version": "1"},
    ],
)
def test_a_hand_damaged_manifest_is_one_corpus_error(tmp_path, damage):
    tok = CharTokenizer(list("abc"))
    store.write_corpus(
        tmp_path, "c", tok, {s: np.array([0, 1, 2, 1]) for s in ("train", "valid", "test")}
    )
    meta = tmp_path / "c" / "meta.json"
    meta.write_text(json.dumps(damage(json.loads(meta.read_text()))))
    with pytest.raises(CorpusError) as err:
        corpus = store.open_corpus(tmp_path, "c")
        corpus.tokens("train")
    assert "lstmlab prepare text FILE... --name c --force" in err.value.hint
