"""`ptb`: the character-level Penn Treebank of Mikolov's "simple-examples" (ptb.char.{train,valid,test}.txt).

Source: Mikolov et al., "Subword language modeling with neural networks" (2012);
archive at http://www.fit.vutbr.cz/~imikolov/rnnlm/simple-examples.tgz, members
`simple-examples/data/ptb.char.*.txt`.

File format: every symbol is followed by one space, words are separated by the
symbol `_`, and every line ends in "\\n " (`<unk>` is spelt `< u n k >`). The
tokens are the whitespace-separated symbols plus one end-of-line token "\\n"
per line: 5,017,482 / 393,042 / 442,423 tokens, 49 symbols + "\\n" = 50.
The vocabulary comes from train, sorted by code point; a valid or test symbol
absent from train is an error. The tokenizer lets a user type a space for `_`
and prints `_` back as a space.

The three char files are verified against their known sha256 (the archive
itself has no published checksum, so the files are checked after extraction).
"""

from __future__ import annotations

import hashlib
import tarfile
import zlib
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from lstmlab.corpora import store
from lstmlab.corpora.download import download
from lstmlab.corpora.text import char_vocabulary, codepoints, decode_utf8, encode_codepoints
from lstmlab.errors import ChecksumError, CorpusError, UsageError, brief
from lstmlab.tokenizers import CharTokenizer

if TYPE_CHECKING:
    from lstmlab.corpora import PrepareRequest

SIMPLE_EXAMPLES_URL = "http://www.fit.vutbr.cz/~imikolov/rnnlm/simple-examples.tgz"
ARCHIVE_NAME = "simple-examples.tgz"
ARCHIVE_DIR = "simple-examples/data"
FILES = {split: f"ptb.char.{split}.txt" for split in store.SPLITS}
# sha256 of Mikolov's files (../shared/data/README.md, verified there by git blob id).
CHAR_SHA256 = {
    "train": "e313d91425e06c4f0a8fb6e881dcce0c291f2a0e9f4dda54833069b122f91da9",
    "valid": "21661f63ec355085879458b6524644d4add5573541b4be14fb52ab2e2e995eb8",
    "test": "1ef5607ac3c463b16e38bfe7900dd3bfc91de5a96e0f21e7eab5188b465b8ebe",
}
EOL = "\n"
_SPACE, _NEWLINE = ord(" "), ord(EOL)
# Code points that str.split() treats as whitespace (the largest is U+3000).
_WHITESPACE = np.array([c for c in range(0x3001) if chr(c).isspace()], dtype="<u4")


def prepare(request: PrepareRequest) -> store.Corpus:
    """Read, verify and tokenise the ptb.char files from `--source` (folder or tgz) or a download."""
    request.check("ptb")
    name = request.folder_name("ptb")
    if request.source is not None:
        source = Path(request.source)
        raw, sources = _read_source(source)
        hint = f"{source} is not Mikolov's original; pass an unmodified copy with --source"
    else:
        archive = download(
            SIMPLE_EXAMPLES_URL,
            request.downloads_dir / ARCHIVE_NAME,
            sha256=None,
            size=None,
            progress=request.progress,
            opener=request.opener,
        )
        raw, sources = _read_archive(archive)
        hint = f"delete {archive} to download it again, or pass a local copy with --source"
    for split in store.SPLITS:
        actual = sources[_source_key(sources, split)]
        if actual != CHAR_SHA256[split]:
            raise ChecksumError(
                f"{FILES[split]} has sha256 {actual}, expected {CHAR_SHA256[split]}", hint=hint
            )
    with request.progress.task("tokenise ptb", total=len(store.SPLITS)) as task:
        cps = {}
        for split in store.SPLITS:
            cps[split] = symbols_and_eols(decode_utf8(raw.pop(split), FILES[split]), FILES[split])
            task.advance()
    symbols, codes = char_vocabulary(cps["train"])
    splits = {split: encode_codepoints(cps[split], codes, FILES[split]) for split in store.SPLITS}
    tokenizer = CharTokenizer(symbols, aliases={" ": "_"}, display={"_": " "})
    return store.write_corpus(
        request.data_dir,
        name,
        tokenizer,
        splits,
        sources=sources,
        extra={"source": SIMPLE_EXAMPLES_URL, "eol": EOL},
        replace=request.force,
        reading=request.reading,
    )


def symbols_and_eols(text: str, where: str) -> np.ndarray:
    """Code points of the whitespace-separated symbols of `text`, with "\\n" after each line.

    Equal to `[s for line in lines for s in line.split() + ["\\n"]]`, computed
    with numpy; every symbol must be a single character.
    """
    cps = codepoints(text)
    blank = np.isin(cps, _WHITESPACE)
    newlines = np.flatnonzero(cps == _NEWLINE)
    if not blank[newlines[-1] + 1 if newlines.size else 0 :].all():
        # a last line without "\n" still ends with an end-of-line token
        cps, blank = np.append(cps, np.uint32(_NEWLINE)), np.append(blank, True)
    glued = ~blank[:-1] & ~blank[1:]
    if glued.any():
        at = int(np.argmax(glued))
        line = int(np.count_nonzero(cps[:at] == _NEWLINE)) + 1
        raise CorpusError(
            f"{where} line {line:,} has a symbol of more than one character ({text[at : at + 2]!r}...)",
            hint="ptb.char files hold one character per space-separated symbol",
        )
    return cps[~blank | (cps == _NEWLINE)]


def _source_key(sources: dict[str, str], split: str) -> str:
    return next(key for key in sources if key.endswith(FILES[split]))


def _read_source(source: Path) -> tuple[dict[str, bytes], dict[str, str]]:
    if source.is_dir():
        for folder in (source, source / "data"):
            if all((folder / FILES[s]).is_file() for s in store.SPLITS):
                raw = {s: (folder / FILES[s]).read_bytes() for s in store.SPLITS}
                return raw, {FILES[s]: hashlib.sha256(raw[s]).hexdigest() for s in store.SPLITS}
        raise UsageError(
            f"{source} does not hold {', '.join(FILES.values())} (nor a data/ folder with them)",
            hint="pass the simple-examples folder, its data/ folder, or simple-examples.tgz",
        )
    if source.is_file():
        return _read_archive(source)
    raise UsageError(f"--source {source} does not exist")


def _read_archive(archive: Path) -> tuple[dict[str, bytes], dict[str, str]]:
    """The three char files from a simple-examples tgz, and sha256 of the archive and each file."""
    wanted = {f"{ARCHIVE_DIR}/{FILES[s]}": s for s in store.SPLITS}
    raw: dict[str, bytes] = {}
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                split = wanted.get(member.name.removeprefix("./"))
                if split is not None and member.isfile():
                    raw[split] = tar.extractfile(member).read()
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise CorpusError(
            f"{archive} is not a readable tar archive ({brief(exc)})",
            hint="pass simple-examples.tgz or a folder with the ptb.char files",
        ) from None
    missing = [name for name, split in wanted.items() if split not in raw]
    if missing:
        raise CorpusError(
            f"{archive} lacks {', '.join(missing)}", hint="pass Mikolov's simple-examples.tgz"
        )
    sources = {archive.name: store.sha256_file(archive)}
    sources.update(
        {f"{ARCHIVE_DIR}/{FILES[s]}": hashlib.sha256(raw[s]).hexdigest() for s in store.SPLITS}
    )
    return raw, sources
