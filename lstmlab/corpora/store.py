"""The on-disk format of a prepared corpus: the contract between `prepare` and the rest.

    data/<name>/train.bin valid.bin test.bin   token ids, flat little-endian uint8 or uint16
    data/<name>/meta.json                      name, tokenizer, per-split counts and sha256,
                                               source checksums, format version

Splits are read with `numpy.memmap`, so a 90M-token enwik8 train split is never
copied into Python objects. A corpus is written into a temporary sibling folder
and renamed into place only when complete, so an interrupted `prepare` never
leaves a half-written corpus where a run would find it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lstmlab.errors import ChecksumError, CorpusError
from lstmlab.tokenizers import tokenizer_from_meta

FORMAT_VERSION = 1
SPLITS = ("train", "valid", "test")
DEFAULT_DATA_DIR = "data"


def default_data_dir() -> Path:
    """`$LSTMLAB_DATA_DIR` when set, else ./data."""
    return Path(os.environ.get("LSTMLAB_DATA_DIR", DEFAULT_DATA_DIR))


def sha256_file(path: Path, chunk_bytes: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class SplitInfo:
    tokens: int
    chars: int
    sha256: str


@dataclass(frozen=True)
class CorpusMeta:
    name: str
    tokenizer: dict
    dtype: str
    splits: dict[str, SplitInfo]
    sources: dict[str, str] = field(default_factory=dict)
    extra: dict = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def to_json(self) -> dict:
        return {
            "format_version": self.format_version,
            "name": self.name,
            "tokenizer": self.tokenizer,
            "dtype": self.dtype,
            "splits": {k: vars(v) for k, v in self.splits.items()},
            "sources": self.sources,
            "extra": self.extra,
        }

    @classmethod
    def from_json(cls, data: Mapping, where: Path) -> CorpusMeta:
        try:
            if data["format_version"] != FORMAT_VERSION:
                raise CorpusError(
                    f"{where} has corpus format {data['format_version']}, this lstmlab reads {FORMAT_VERSION}",
                    hint="prepare the corpus again",
                )
            return cls(
                name=data["name"],
                tokenizer=dict(data["tokenizer"]),
                dtype=data["dtype"],
                splits={k: SplitInfo(**v) for k, v in data["splits"].items()},
                sources=dict(data.get("sources", {})),
                extra=dict(data.get("extra", {})),
            )
        except (KeyError, TypeError) as exc:
            raise CorpusError(
                f"{where} is not a valid corpus manifest (missing {exc})",
                hint="prepare the corpus again",
            ) from None


class Corpus:
    """A prepared corpus on disk: its manifest, tokenizer and memory-mapped splits."""

    def __init__(self, path: Path, meta: CorpusMeta) -> None:
        self.path = path
        self.meta = meta
        self.tokenizer = tokenizer_from_meta(meta.tokenizer, path)

    @property
    def name(self) -> str:
        return self.meta.name

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size

    def tokens(self, split: str) -> np.ndarray:
        """The split's token ids as a read-only memmap (no copy)."""
        if split not in self.meta.splits:
            raise CorpusError(
                f"corpus {self.name!r} has no split {split!r}",
                hint=f"use one of {', '.join(self.meta.splits)}",
            )
        info = self.meta.splits[split]
        path = self.path / f"{split}.bin"
        dtype = np.dtype(self.meta.dtype)
        expected = info.tokens * dtype.itemsize
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise CorpusError(
                f"{path} is missing", hint=f"run `lstmlab prepare {self.name}` again"
            ) from None
        if size != expected:
            raise ChecksumError(
                f"{path} has {size} bytes, its manifest says {expected}",
                hint=f"the file is truncated or altered; run `lstmlab prepare {self.name}` again",
            )
        if info.tokens == 0:
            return np.zeros(0, dtype=dtype)
        return np.memmap(path, dtype=dtype, mode="r")

    def verify(self) -> None:
        """Recompute every split's sha256 against the manifest (ChecksumError on mismatch)."""
        for split, info in self.meta.splits.items():
            self.tokens(split)  # size check first: cheap and names truncation
            actual = sha256_file(self.path / f"{split}.bin")
            if actual != info.sha256:
                raise ChecksumError(
                    f"{self.path / (split + '.bin')} does not match its checksum in meta.json",
                    hint=f"the file was altered; run `lstmlab prepare {self.name}` again",
                )


def corpus_dir(data_dir: Path | str, name: str) -> Path:
    return Path(data_dir) / name


def open_corpus(data_dir: Path | str, name: str) -> Corpus:
    """Open a prepared corpus, or raise a CorpusError saying how to prepare it."""
    path = corpus_dir(data_dir, name)
    meta_path = path / "meta.json"
    if not meta_path.is_file():
        raise CorpusError(
            f"corpus {name!r} is not prepared in {Path(data_dir)}/",
            hint=f"run `lstmlab prepare {name}` (or pass --data-dir / set data.data_dir)",
        )
    try:
        data = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorpusError(
            f"{meta_path} is unreadable ({exc.__class__.__name__})",
            hint=f"run `lstmlab prepare {name}` again",
        ) from None
    return Corpus(path, CorpusMeta.from_json(data, meta_path))


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype("<u1") if vocab_size <= 256 else np.dtype("<u2")


def write_corpus(
    data_dir: Path | str,
    name: str,
    tokenizer,
    splits: Mapping[str, np.ndarray],
    *,
    sources: Mapping[str, str] | None = None,
    extra: Mapping | None = None,
    files: Mapping[str, Path] | None = None,
) -> Corpus:
    """Write a complete corpus atomically and return it opened.

    `splits` maps each of train/valid/test to its token ids. `files` are extra
    files (e.g. a sentencepiece model) copied into the corpus folder. Characters
    per split are counted with the tokenizer's `char_lengths`, so bpc stays per
    character of the original text whatever the tokenizer.
    """
    missing = [s for s in SPLITS if s not in splits]
    if missing:
        raise CorpusError(f"corpus {name!r} lacks split(s) {', '.join(missing)}")
    dtype = token_dtype(tokenizer.vocab_size)
    char_len = tokenizer.char_lengths()
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    final = corpus_dir(data_dir, name)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.partial-", dir=data_dir))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp makes it owner-only; a shared data dir needs the usual mode
    try:
        infos = {}
        for split in SPLITS:
            ids = np.asarray(splits[split])
            if ids.size and (ids.min() < 0 or ids.max() >= tokenizer.vocab_size):
                raise CorpusError(f"split {split} of {name!r} has ids outside the vocabulary")
            path = tmp / f"{split}.bin"
            ids.astype(dtype, copy=False).tofile(path)
            chars = _count_chars(ids, char_len)
            infos[split] = SplitInfo(tokens=int(ids.size), chars=chars, sha256=sha256_file(path))
        for dest, src in (files or {}).items():
            shutil.copyfile(src, tmp / dest)
        meta = CorpusMeta(
            name=name,
            tokenizer=tokenizer.to_meta(),
            dtype=dtype.str,
            splits=infos,
            sources=dict(sources or {}),
            extra=dict(extra or {}),
        )
        (tmp / "meta.json").write_text(
            json.dumps(meta.to_json(), indent=2) + "\n", encoding="utf-8"
        )
        _replace_dir(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return open_corpus(data_dir, name)


def _count_chars(ids: np.ndarray, char_len: np.ndarray, chunk: int = 1 << 24) -> int:
    """Characters the ids stand for, counted in chunks so a 90M-token split is never widened whole."""
    if (char_len == 1).all():
        return int(ids.size)
    counts = np.zeros(len(char_len), dtype=np.int64)
    for start in range(0, ids.size, chunk):
        counts += np.bincount(ids[start : start + chunk], minlength=len(char_len))
    return int(counts @ char_len)


def _replace_dir(src: Path, dest: Path) -> None:
    """Move a finished folder into place; an older corpus there is removed only after."""
    old = None
    if dest.exists():
        old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
        os.replace(dest, old)
    os.replace(src, dest)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
