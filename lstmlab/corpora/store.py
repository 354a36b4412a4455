"""The on-disk format of a prepared corpus: the contract between `prepare` and the rest.

    data/<name>/train.bin valid.bin test.bin   token ids, flat little-endian uint8 or uint16
    data/<name>/meta.json                      name, tokenizer, per-split counts and sha256,
                                               source checksums, format version

Splits are read with `numpy.memmap`, so a 90M-token enwik8 train split is never
copied into Python objects. A corpus is written into a temporary sibling folder
and renamed into place only when complete, so an interrupted `prepare` never
leaves a half-written corpus where a run would find it.

Nothing but an lstmlab corpus is ever replaced: `check_target` refuses an
existing `data/<name>` that is not a corpus folder holding only the files
written here (a user's folder, a file, a symlink), refuses a corpus unless
`replace` (`prepare --force`) is given, and refuses a target that holds a file
being read. `prepare` runs it before any work and `write_corpus` again just
before the rename.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lstmlab.errors import ChecksumError, CorpusError, LstmlabError, UsageError
from lstmlab.files import current_umask, listing
from lstmlab.tokenizers import tokenizer_from_meta

FORMAT_VERSION = 1
SPLITS = ("train", "valid", "test")
DEFAULT_DATA_DIR = "data"
META = "meta.json"
# Every file `write_corpus` can put in a corpus folder ("spm.model" is subword.MODEL_FILE,
# named here so the store does not import sentencepiece).
CORPUS_FILES = frozenset({*(f"{s}.bin" for s in SPLITS), META, "spm.model"})


# Corpora whose folder name is their `lstmlab prepare` kind by default.
STANDARD_CORPORA = ("ptb", "enwik8", "builtin")


def prepare_command(name: str, *, again: bool = False) -> str:
    """The command that (re)builds the corpus folder `name`, spelled as the user types it."""
    force = " --force" if again else ""
    if name in STANDARD_CORPORA:
        return f"lstmlab prepare {name}{force}"
    return f"lstmlab prepare text FILE... --name {name}{force}"


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
        """Read a manifest, checking every field's type: a hand-edited file fails in one line."""
        name = where.parent.name

        def bad(what: str) -> CorpusError:
            return CorpusError(
                f"{where} is not a valid corpus manifest ({what})",
                hint=f"run `{prepare_command(name, again=True)}`",
            )

        if not isinstance(data, Mapping):
            raise bad(f"a {type(data).__name__}, not a mapping")
        if data.get("format_version") != FORMAT_VERSION:
            raise CorpusError(
                f"{where} has corpus format {data.get('format_version')!r}, this lstmlab reads {FORMAT_VERSION}",
                hint=f"run `{prepare_command(name, again=True)}`",
            )
        for key, kind in (
            ("name", str),
            ("tokenizer", Mapping),
            ("dtype", str),
            ("splits", Mapping),
        ):
            if not isinstance(data.get(key), kind):
                raise bad(f"{key!r} is missing or not a {kind.__name__.lower()}")
        try:
            dtype = np.dtype(data["dtype"])
        except TypeError:
            raise bad(f"dtype {data['dtype']!r} is not a numpy type") from None
        if dtype.kind != "u":
            raise bad(f"dtype {data['dtype']!r} is not an unsigned integer type")
        splits = {}
        for split, info in data["splits"].items():
            if not isinstance(info, Mapping):
                raise bad(f"split {split!r} is not a mapping")
            counts = [info.get("tokens"), info.get("chars")]
            if not all(type(c) is int and c >= 0 for c in counts):
                raise bad(f"split {split!r} needs whole, non-negative tokens and chars")
            if not isinstance(info.get("sha256"), str):
                raise bad(f"split {split!r} has no sha256")
            splits[split] = SplitInfo(tokens=counts[0], chars=counts[1], sha256=info["sha256"])
        extras = [data.get("sources", {}), data.get("extra", {})]
        if not all(isinstance(e, Mapping) for e in extras):
            raise bad("'sources' and 'extra' must be mappings")
        return cls(
            name=data["name"],
            tokenizer=dict(data["tokenizer"]),
            dtype=data["dtype"],
            splits=splits,
            sources=dict(extras[0]),
            extra=dict(extras[1]),
        )


class Corpus:
    """A prepared corpus on disk: its manifest, tokenizer and memory-mapped splits."""

    def __init__(self, path: Path, meta: CorpusMeta) -> None:
        self.path = path
        self.meta = meta
        try:
            self.tokenizer = tokenizer_from_meta(meta.tokenizer, path)
        except LstmlabError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CorpusError(
                f"{path / 'meta.json'} has an unreadable tokenizer ({type(exc).__name__}: {exc})",
                hint=f"run `{prepare_command(path.name, again=True)}`",
            ) from None

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
                f"{path} is missing", hint=f"run `{prepare_command(self.name, again=True)}`"
            ) from None
        if size != expected:
            raise ChecksumError(
                f"{path} has {size} bytes, its manifest says {expected}",
                hint=f"the file is truncated or altered; run `{prepare_command(self.name, again=True)}`",
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
                    hint=f"the file was altered; run `{prepare_command(self.name, again=True)}`",
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
            hint=f"run `{prepare_command(name)}` (or pass --data-dir / set data.data_dir)",
        )
    try:
        data = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorpusError(
            f"{meta_path} is unreadable ({exc.__class__.__name__})",
            hint=f"run `{prepare_command(name, again=True)}`",
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
    replace: bool = False,
    reading: Iterable[Path | str] = (),
) -> Corpus:
    """Write a complete corpus atomically and return it opened.

    `splits` maps each of train/valid/test to its token ids. `files` are extra
    files (e.g. a sentencepiece model) copied into the corpus folder. Characters
    per split are counted with the tokenizer's `char_lengths`, so bpc stays per
    character of the original text whatever the tokenizer. An existing corpus of
    that name is replaced only with `replace`; anything else there is refused
    (`check_target`, run before the split files are written and again at the
    rename). `reading` are the files the corpus was read from: a target holding
    one is refused.
    """
    missing = [s for s in SPLITS if s not in splits]
    if missing:
        raise CorpusError(f"corpus {name!r} lacks split(s) {', '.join(missing)}")
    extra_files = sorted(set(files or {}) - CORPUS_FILES)
    if extra_files:
        raise CorpusError(f"corpus {name!r} cannot hold {', '.join(extra_files)}")
    dtype = token_dtype(tokenizer.vocab_size)
    char_len = tokenizer.char_lengths()
    data_dir = ensure_data_dir(data_dir)
    final = check_target(data_dir, name, replace=replace, reading=reading)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.partial-", dir=data_dir))
    tmp.chmod(
        0o777 & ~current_umask()
    )  # mkdtemp makes it owner-only; a shared data dir needs the usual mode
    try:
        infos = {}
        for split in SPLITS:
            ids = np.asarray(splits[split])
            if ids.size and (ids.min() < 0 or ids.max() >= tokenizer.vocab_size):
                raise CorpusError(f"split {split} of {name!r} has ids outside the vocabulary")
            path = tmp / f"{split}.bin"
            ids.astype(dtype, copy=False).tofile(path)
            chars = count_chars(ids, char_len)
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
        (tmp / META).write_text(json.dumps(meta.to_json(), indent=2) + "\n", encoding="utf-8")
        _publish(tmp, final, replace=replace, reading=tuple(reading))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return open_corpus(data_dir, name)


def count_chars(ids: np.ndarray, char_len: np.ndarray, chunk: int = 1 << 24) -> int:
    """Characters the ids stand for, counted in chunks so a 90M-token split is never widened whole."""
    if (char_len == 1).all():
        return int(ids.size)
    counts = np.zeros(len(char_len), dtype=np.int64)
    for start in range(0, ids.size, chunk):
        counts += np.bincount(ids[start : start + chunk], minlength=len(char_len))
    return int(counts @ char_len)


def ensure_data_dir(data_dir: Path | str) -> Path:
    """Create the data root if needed; a file in its place is a UsageError, not a traceback."""
    data_dir = Path(data_dir)
    if data_dir.exists() and not data_dir.is_dir():
        raise UsageError(
            f"data dir {data_dir} exists and is not a folder",
            hint="pass another --data-dir (or set $LSTMLAB_DATA_DIR)",
        )
    data_dir.mkdir(parents=True, exist_ok=True)
    return data_dir


def is_corpus_dir(path: Path | str) -> bool:
    """A real folder (not a symlink) whose meta.json is a readable lstmlab corpus manifest."""
    path = Path(path)
    if path.is_symlink() or not path.is_dir():
        return False
    meta = path / META
    if meta.is_symlink() or not meta.is_file():
        return False
    try:
        data = json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return (
        isinstance(data, dict)
        and isinstance(data.get("format_version"), int)
        and isinstance(data.get("name"), str)
        and isinstance(data.get("splits"), dict)
        and isinstance(data.get("tokenizer"), dict)
    )


def foreign_entries(path: Path) -> list[str]:
    """Names in a corpus folder that `write_corpus` never writes (a user's files), sorted."""
    return sorted(
        p.name
        for p in Path(path).iterdir()
        if p.name not in CORPUS_FILES or p.is_symlink() or not p.is_file()
    )


def check_target(
    data_dir: Path | str,
    name: str,
    *,
    replace: bool = False,
    reading: Iterable[Path | str] = (),
) -> Path:
    """`data_dir/name` if a corpus may be written there, else a UsageError saying why not.

    Allowed: nothing there, an empty folder, or (only with `replace`) an lstmlab
    corpus holding nothing but its own files. A file, a symlink, any other folder,
    or a target holding one of the `reading` files is refused whatever the flags.
    """
    data_dir = Path(data_dir)
    if data_dir.exists() and not data_dir.is_dir():
        raise UsageError(
            f"data dir {data_dir} exists and is not a folder",
            hint="pass another --data-dir (or set $LSTMLAB_DATA_DIR)",
        )
    target = corpus_dir(data_dir, name)
    other_name = "or pass another --name"
    if not os.path.lexists(target):
        return target
    if target.is_symlink():
        raise UsageError(
            f"{target} is a symbolic link; prepare never replaces it",
            hint=f"pass another --name, or remove the link {target} yourself",
        )
    if not target.is_dir():
        raise UsageError(
            f"{target} exists and is not a corpus folder; prepare never replaces it",
            hint="pass another --name (or --data-dir) to write the corpus elsewhere",
        )
    resolved = target.resolve()
    for path in map(Path, reading):
        if path.exists() and (path.resolve() == resolved or resolved in path.resolve().parents):
            raise UsageError(
                f"{path} lies inside {target}, the folder this corpus would be written to; "
                "prepare never deletes what it reads",
                hint=f"move {path} out of {target}, {other_name}",
            )
    if not any(target.iterdir()):
        return target  # an empty folder holds nothing to lose
    if not is_corpus_dir(target):
        raise UsageError(
            f"{target} exists and is not an lstmlab corpus (no readable {META}); prepare never replaces it",
            hint=f"pass another --name (or --data-dir), or move {target} away yourself",
        )
    foreign = foreign_entries(target)
    if foreign:
        raise UsageError(
            f"corpus folder {target} also holds files prepare did not write ({listing(foreign)}); "
            "it is not replaced",
            hint=f"move them out of {target}, {other_name}",
        )
    if not replace:
        raise UsageError(
            f"corpus {name!r} already exists in {data_dir}",
            hint=f"pass --force to replace it, {other_name}",
        )
    return target


def _publish(tmp: Path, final: Path, *, replace: bool, reading: tuple) -> None:
    """Rename the finished folder `tmp` to `final`; an old corpus there is deleted only after.

    The target is checked again here (a folder may have appeared while the corpus
    was built); a folder that turns up between the check and the rename makes the
    rename fail (POSIX never renames a folder over a non-empty one), never deletes.
    """
    check_target(final.parent, final.name, replace=replace, reading=reading)
    if not os.path.lexists(final) or not any(final.iterdir()):
        try:
            os.rename(tmp, final)  # over an empty folder at most
        except OSError:
            raise UsageError(
                f"{final} appeared while the corpus was being prepared; it was left alone",
                hint="run prepare again, or pass another --name",
            ) from None
        return
    old = final.with_name(f".{final.name}.old-{os.getpid()}-{secrets.token_hex(4)}")
    os.rename(final, old)
    if not is_corpus_dir(old) or foreign_entries(old):  # changed since the check: put it back
        os.rename(old, final)
        check_target(final.parent, final.name, replace=replace, reading=reading)
        raise UsageError(f"{final} changed while the corpus was being prepared; it was left alone")
    try:
        os.rename(tmp, final)
    except BaseException:
        os.rename(old, final)
        raise
    for entry in old.iterdir():  # only the corpus's own files, then the folder if empty
        if entry.name in CORPUS_FILES and entry.is_file() and not entry.is_symlink():
            entry.unlink(missing_ok=True)
    with contextlib.suppress(
        OSError
    ):  # something added meanwhile stays (hidden) rather than be lost
        old.rmdir()
