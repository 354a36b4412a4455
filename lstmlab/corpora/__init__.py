"""Corpora: what `lstmlab prepare` can build, and the one function that builds any of them.

Each corpus is a module with a `prepare(request) -> Corpus` function that reads
its source (a local copy, or a download from the canonical address), verifies
it, tokenises it and writes it with `store.write_corpus` (atomic), returning the
opened corpus. `CORPORA` names them; a new corpus is a new module plus one line
there (no decorators, no import-time registration).

    ptb      Mikolov's character-level Penn Treebank (ptb.char.*), 50 symbols
    enwik8   first 10^8 bytes of English Wikipedia (Hutter Prize), bytes as tokens
    text     any local UTF-8 text file(s), split by fraction
    builtin  CPython's own documentation text; needs no network
    hf       any text dataset of the Hugging Face `datasets` library (Hub id or local folder)
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from lstmlab.corpora import builtin, enwik8, hf, ptb, store, text
from lstmlab.corpora.store import Corpus
from lstmlab.errors import UsageError
from lstmlab.progress import NullProgress, Progress

if TYPE_CHECKING:
    from lstmlab.subword import SubwordOptions

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass(frozen=True)
class PrepareRequest:
    """Everything a corpus module needs to prepare itself; the CLI builds one from its arguments."""

    data_dir: Path
    source: Path | None = None  # local file/folder/archive instead of downloading
    inputs: tuple[str, ...] = ()  # positional extras: the FILEs for `text`
    name: str | None = None  # folder name under data_dir; default = corpus kind
    options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    progress: Progress = field(default_factory=NullProgress)
    opener: Callable | None = None  # urlopen-like; None = urllib.request.urlopen
    download_dir: Path | None = None  # None: <data_dir>/downloads
    force: bool = False  # replace an existing lstmlab corpus of that name (never anything else)
    publish_dir: Path | None = None  # final data root when data_dir is a staging folder

    @property
    def downloads_dir(self) -> Path:
        """Where downloaded archives are cached: `<data_dir>/downloads/` unless set."""
        return Path(self.download_dir or Path(self.data_dir) / "downloads")

    @property
    def reading(self) -> tuple[Path, ...]:
        """The local paths this request reads (`--source` and FILEs that exist): never deleted."""
        paths = [Path(p) for p in self.inputs]
        if self.source is not None:
            paths.append(Path(self.source))
        return tuple(p for p in paths if p.exists())

    def folder_name(self, default: str) -> str:
        """The corpus folder name (`name` when given, else `default`), checked before any work.

        The name must be a plain folder name, and the folder it names under the
        data dir must be free to write (`store.check_target`: absent, empty, or an
        lstmlab corpus with `force`), so a refusal comes before any download.
        """
        name = default if self.name is None else self.name
        if not _NAME.fullmatch(name) or name == "downloads":
            raise UsageError(
                f"{name!r} cannot be a corpus name",
                hint="use letters, digits, '.', '_' or '-', not starting with '.' (and not 'downloads')",
            )
        store.check_target(
            self.publish_dir or self.data_dir, name, replace=self.force, reading=self.reading
        )
        return name

    def check(self, kind: str, *, options: Iterable[str] = (), inputs: bool = False) -> None:
        """Reject positional FILEs and options the corpus `kind` does not take."""
        if self.inputs and not inputs:
            raise UsageError(
                f"{kind} takes no FILE arguments (got {', '.join(self.inputs)})",
                hint="pass a local copy with --source PATH; FILE arguments are for `text`",
            )
        unknown = sorted(set(self.options) - set(options))
        if unknown:
            flags = ", ".join("--" + key.replace("_", "-") for key in unknown)
            raise UsageError(
                f"{kind} does not take {flags}", hint=f"{flags} apply to other corpora"
            )


@dataclass(frozen=True)
class CorpusSpec:
    prepare: Callable[[PrepareRequest], Corpus]
    summary: str  # one line for `lstmlab prepare --help` and listings
    source: str  # where it comes from (paper / url)


CORPORA: Mapping[str, CorpusSpec] = MappingProxyType(
    {
        "ptb": CorpusSpec(
            ptb.prepare,
            "Penn Treebank, Mikolov's character level (ptb.char.*): 50 symbols, 5.0M/393k/442k tokens",
            f"Mikolov et al. 2012, simple-examples: {ptb.SIMPLE_EXAMPLES_URL}",
        ),
        "enwik8": CorpusSpec(
            enwik8.prepare,
            "first 10^8 bytes of English Wikipedia, bytes as tokens, split 90M/5M/5M",
            f"Hutter Prize / Mahoney's LTCB: {enwik8.ENWIK8_URL}",
        ),
        "text": CorpusSpec(
            text.prepare,
            "your own UTF-8 text file(s), characters as tokens, split by --fractions",
            "local files",
        ),
        "builtin": CorpusSpec(
            builtin.prepare,
            "CPython's documentation text (pydoc topics), no network needed; --with-docstrings adds stdlib docstrings",
            "pydoc_data.topics of the running Python",
        ),
        "hf": CorpusSpec(
            hf.prepare,
            "any `datasets` text dataset: NAME [--config C] [--text-field F]",
            "Hugging Face datasets",
        ),
    }
)


def prepare_corpus(
    kind: str, request: PrepareRequest, subword: SubwordOptions | None = None
) -> Corpus:
    """Prepare the corpus `kind` as `request` asks and return it opened.

    With `subword`, the corpus is first prepared in a temporary folder and then
    re-encoded with sentencepiece trained on its train split (`reencode.py`).
    """
    spec = CORPORA.get(kind)
    if spec is None:
        raise UsageError(f"unknown corpus {kind!r}", hint=f"choose one of: {', '.join(CORPORA)}")
    if subword is None:
        return spec.prepare(request)
    from lstmlab.corpora.reencode import subword_corpus

    data_dir = store.ensure_data_dir(request.data_dir)
    staging = Path(tempfile.mkdtemp(prefix=".subword-", dir=data_dir))
    try:
        # the corpus module writes into staging but checks the real target before any work
        staged = replace(
            request, data_dir=staging, download_dir=request.downloads_dir, publish_dir=data_dir
        )
        base = spec.prepare(staged)
        return subword_corpus(
            base,
            data_dir,
            subword,
            request.progress,
            replace=request.force,
            reading=request.reading,
        )
    finally:
        shutil.rmtree(staging, ignore_errors=True)


__all__ = ["CORPORA", "CorpusSpec", "PrepareRequest", "prepare_corpus"]
