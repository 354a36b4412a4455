"""`enwik8`: the first 10^8 bytes of an English Wikipedia dump (Hutter Prize), bytes as tokens.

Source: Mahoney's Large Text Compression Benchmark, http://mattmahoney.net/dc/enwik8.zip
(one member, `enwik8`). Split as in awd-lstm-lm's `data/enwik8/prep_enwik8.py`
(which Transformer-XL also uses): train = first 90,000,000 bytes, valid = next
5,000,000, test = last 5,000,000. Token ids are the byte values (vocabulary
256); newlines are ordinary bytes, no end-of-line token is added.

Verification: the zip's sha256 (Hugging Face LTCB/enwik8 download checksum);
the file's size of exactly 10^8 bytes and its md5 from Mahoney's table, computed
while reading. The 100 MB are read once into one buffer and written as three
views of it; nothing becomes a Python object per byte.

The sizes and checksums are module constants so that tests can run the very
same code on a small synthetic "enwik8".
"""

from __future__ import annotations

import hashlib
import zipfile
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import numpy as np

from lstmlab.corpora import store
from lstmlab.corpora.download import download
from lstmlab.errors import ChecksumError, CorpusError, UsageError, brief
from lstmlab.tokenizers import ByteTokenizer

if TYPE_CHECKING:
    from lstmlab.corpora import PrepareRequest

ENWIK8_URL = "http://mattmahoney.net/dc/enwik8.zip"
ZIP_NAME = "enwik8.zip"
MEMBER = "enwik8"
ZIP_SIZE = 36_445_475
ZIP_SHA256 = "547994d9980ebed1288380d652999f38a14fe291a6247c157c3d33d4932534bc"
SIZE = 100_000_000
MD5 = "a1fa5ffddb56f4953e226637dabbb36a"
SPLIT_SIZES = {"train": 90_000_000, "valid": 5_000_000, "test": 5_000_000}
CHUNK_BYTES = 1 << 22


def prepare(request: PrepareRequest) -> store.Corpus:
    """Read and verify enwik8 from `--source` (zip, raw file, or a folder with either) or a download."""
    request.check("enwik8")
    name = request.folder_name("enwik8")
    if sum(SPLIT_SIZES.values()) != SIZE:
        raise CorpusError(f"enwik8 split sizes {SPLIT_SIZES} do not add up to {SIZE:,}")
    if request.source is not None:
        path = _locate(Path(request.source))
    else:
        path = download(
            ENWIK8_URL,
            request.downloads_dir / ZIP_NAME,
            sha256=ZIP_SHA256,
            size=ZIP_SIZE,
            progress=request.progress,
            opener=request.opener,
        )
    if zipfile.is_zipfile(path):
        data, sources = _read_zip(path, request.progress)
    else:
        data, sources = _read_raw(path, request.progress)
    ids = np.frombuffer(data, dtype=np.uint8)  # a view of the buffer: no copy
    bounds = np.cumsum([0, *SPLIT_SIZES.values()])
    splits = {split: ids[bounds[i] : bounds[i + 1]] for i, split in enumerate(store.SPLITS)}
    extra = {"source": ENWIK8_URL, "split_bytes": dict(SPLIT_SIZES)}
    return store.write_corpus(
        request.data_dir,
        name,
        ByteTokenizer(),
        splits,
        sources=sources,
        extra=extra,
        replace=request.force,
        reading=request.reading,
    )


def _locate(source: Path) -> Path:
    if source.is_dir():
        for candidate in (source / ZIP_NAME, source / MEMBER):
            if candidate.is_file():
                return candidate
        raise UsageError(
            f"{source} holds neither {ZIP_NAME} nor {MEMBER}",
            hint="pass enwik8.zip or the unzipped enwik8 file",
        )
    if not source.is_file():
        raise UsageError(f"--source {source} does not exist")
    return source


def _read_zip(path: Path, progress) -> tuple[bytearray, dict[str, str]]:
    actual = store.sha256_file(path)
    if actual != ZIP_SHA256:
        raise ChecksumError(
            f"{path} has sha256 {actual}, expected {ZIP_SHA256}",
            hint=f"it is not the original {ZIP_NAME}; fetch {ENWIK8_URL} again",
        )
    try:
        with zipfile.ZipFile(path) as archive:
            try:
                info = archive.getinfo(MEMBER)
            except KeyError:
                raise CorpusError(
                    f"{path} has no member {MEMBER!r}", hint=f"pass the original {ZIP_NAME}"
                ) from None
            _check_size(f"{path}:{MEMBER}", info.file_size)
            with archive.open(info) as stream:
                data, sha256 = _read_verified(stream, f"{path}:{MEMBER}", progress)
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise CorpusError(
            f"{path} is not a readable zip archive ({brief(exc)})", hint=f"fetch {ENWIK8_URL} again"
        ) from None
    return data, {ZIP_NAME: actual, MEMBER: sha256}


def _read_raw(path: Path, progress) -> tuple[bytearray, dict[str, str]]:
    _check_size(str(path), path.stat().st_size)
    with open(path, "rb") as stream:
        data, sha256 = _read_verified(stream, str(path), progress)
    return data, {MEMBER: sha256}


def _check_size(where: str, size: int) -> None:
    if size != SIZE:
        raise ChecksumError(
            f"{where} has {size:,} bytes, expected {SIZE:,}",
            hint="enwik8 is exactly the first 10^8 bytes of the Wikipedia dump; pass enwik8.zip or the unzipped enwik8",
        )


def _read_verified(stream: BinaryIO, where: str, progress) -> tuple[bytearray, str]:
    """Read exactly SIZE bytes into one buffer, checking md5 on the way; return it and its sha256."""
    data = bytearray(SIZE)
    view = memoryview(data)
    md5 = hashlib.md5(usedforsecurity=False)
    sha256 = hashlib.sha256()
    filled = 0
    with progress.task(f"read {MEMBER}", total=SIZE, unit="bytes") as task:
        while filled < SIZE:
            got = stream.readinto(view[filled : filled + CHUNK_BYTES])
            if not got:
                break
            md5.update(view[filled : filled + got])
            sha256.update(view[filled : filled + got])
            filled += got
            task.advance(got)
    view.release()
    if filled != SIZE or stream.read(1):
        raise ChecksumError(f"{where} changed size while being read (expected {SIZE:,} bytes)")
    if md5.hexdigest() != MD5:
        raise ChecksumError(
            f"{where} has md5 {md5.hexdigest()}, expected {MD5}",
            hint=f"it is not the original enwik8; fetch {ENWIK8_URL} again",
        )
    return data, sha256.hexdigest()
