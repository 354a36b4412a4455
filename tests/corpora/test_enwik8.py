"""enwik8 on a synthetic 1,000-byte "enwik8": the real code path with patched sizes and checksums."""

from __future__ import annotations

import hashlib
import zipfile

import numpy as np
import pytest

from lstmlab.corpora import PrepareRequest, enwik8
from lstmlab.errors import ChecksumError, CorpusError, UsageError

DATA = np.random.default_rng(8).integers(0, 256, size=1000, dtype=np.uint8).tobytes()


@pytest.fixture
def small_enwik8(tmp_path, monkeypatch):
    """A 1,000-byte raw file and its zip, with the module's sizes and checksums patched to theirs."""
    raw = tmp_path / "src" / "enwik8"
    raw.parent.mkdir()
    raw.write_bytes(DATA)
    archive = tmp_path / "zipped" / "enwik8.zip"
    archive.parent.mkdir()
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("enwik8", DATA)
    monkeypatch.setattr(enwik8, "SIZE", 1000)
    monkeypatch.setattr(enwik8, "SPLIT_SIZES", {"train": 900, "valid": 50, "test": 50})
    monkeypatch.setattr(enwik8, "MD5", hashlib.md5(DATA).hexdigest())
    monkeypatch.setattr(enwik8, "ZIP_SHA256", hashlib.sha256(archive.read_bytes()).hexdigest())
    monkeypatch.setattr(enwik8, "ZIP_SIZE", archive.stat().st_size)
    monkeypatch.setattr(enwik8, "CHUNK_BYTES", 256)  # several reads, as with the real file
    return raw, archive


def assert_split_exactly(corpus):
    assert {s: i.tokens for s, i in corpus.meta.splits.items()} == {
        "train": 900,
        "valid": 50,
        "test": 50,
    }
    assert {s: i.chars for s, i in corpus.meta.splits.items()} == {
        "train": 900,
        "valid": 50,
        "test": 50,
    }
    assert corpus.vocab_size == 256 and corpus.meta.dtype == "|u1"
    joined = np.concatenate([corpus.tokens(s) for s in ("train", "valid", "test")])
    assert joined.tobytes() == DATA  # ids are the bytes, in order
    corpus.verify()


def assert_nothing_written(data_dir):
    assert not data_dir.exists() or list(data_dir.iterdir()) == []


@pytest.mark.parametrize("kind", ["raw", "zip", "folder"])
def test_split_sizes_and_byte_ids(small_enwik8, tmp_path, kind):
    raw, archive = small_enwik8
    source = {"raw": raw, "zip": archive, "folder": archive.parent}[kind]
    corpus = enwik8.prepare(PrepareRequest(data_dir=tmp_path / "data", source=source))
    assert_split_exactly(corpus)
    assert corpus.meta.sources["enwik8"] == hashlib.sha256(DATA).hexdigest()
    assert ("enwik8.zip" in corpus.meta.sources) == (kind != "raw")


def test_download_when_no_source_is_given(small_enwik8, tmp_path, fake_server):
    _, archive = small_enwik8
    server = fake_server(archive.read_bytes())
    corpus = enwik8.prepare(PrepareRequest(data_dir=tmp_path / "data", opener=server))
    assert server.requests[0].full_url == enwik8.ENWIK8_URL
    assert (tmp_path / "data" / "downloads" / "enwik8.zip").is_file()
    assert_split_exactly(corpus)


def test_raw_file_with_wrong_md5_leaves_nothing(small_enwik8, tmp_path):
    raw, _ = small_enwik8
    raw.write_bytes(DATA[:-1] + b"\x00" if DATA[-1] else DATA[:-1] + b"\x01")
    with pytest.raises(ChecksumError, match=f"has md5 [0-9a-f]{{32}}, expected {enwik8.MD5}"):
        enwik8.prepare(PrepareRequest(data_dir=tmp_path / "data", source=raw))
    assert_nothing_written(tmp_path / "data")


def test_raw_file_of_wrong_size_is_refused(small_enwik8, tmp_path):
    raw, _ = small_enwik8
    raw.write_bytes(DATA + b"x")
    with pytest.raises(ChecksumError, match="has 1,001 bytes, expected 1,000"):
        enwik8.prepare(PrepareRequest(data_dir=tmp_path / "data", source=raw))
    assert_nothing_written(tmp_path / "data")


def test_zip_with_wrong_checksum_keeps_the_previous_corpus(small_enwik8, tmp_path):
    raw, archive = small_enwik8
    data = tmp_path / "data"
    before = enwik8.prepare(PrepareRequest(data_dir=data, source=raw))
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("enwik8", DATA[::-1])
    with pytest.raises(
        ChecksumError, match=f"enwik8.zip has sha256 [0-9a-f]{{64}}, expected {enwik8.ZIP_SHA256}"
    ):
        enwik8.prepare(PrepareRequest(data_dir=data, source=archive, force=True))
    assert sorted(p.name for p in data.iterdir()) == ["enwik8"]  # no stray temp folder
    assert_split_exactly(before)


def test_zip_without_the_member_is_an_error(small_enwik8, tmp_path, monkeypatch):
    _, archive = small_enwik8
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("something-else", DATA)
    monkeypatch.setattr(enwik8, "ZIP_SHA256", hashlib.sha256(archive.read_bytes()).hexdigest())
    with pytest.raises(CorpusError, match="has no member 'enwik8'"):
        enwik8.prepare(PrepareRequest(data_dir=tmp_path / "data", source=archive))


def test_bad_arguments(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        enwik8.prepare(PrepareRequest(data_dir=tmp_path / "data", source=tmp_path / "missing.zip"))
    with pytest.raises(UsageError, match="holds neither enwik8.zip nor enwik8"):
        enwik8.prepare(PrepareRequest(data_dir=tmp_path / "data", source=tmp_path))
    with pytest.raises(UsageError, match="enwik8 does not take --with-docstrings"):
        enwik8.prepare(
            PrepareRequest(data_dir=tmp_path / "data", options={"with_docstrings": True})
        )


def test_published_facts():
    assert enwik8.SIZE == 10**8
    assert enwik8.SPLIT_SIZES == {"train": 90_000_000, "valid": 5_000_000, "test": 5_000_000}
    assert enwik8.ZIP_SHA256 == "547994d9980ebed1288380d652999f38a14fe291a6247c157c3d33d4932534bc"
    assert enwik8.MD5 == "a1fa5ffddb56f4953e226637dabbb36a"
    assert enwik8.ENWIK8_URL == "http://mattmahoney.net/dc/enwik8.zip"
