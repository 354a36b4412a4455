"""`text`: your own UTF-8 text file(s) as a character-level corpus.

The files are read in the order given and joined with one "\\n" between them;
the whole text is split contiguously by fractions (default 0.9 / 0.05 / 0.05:
the first 90% of the characters are train, the next 5% valid, the rest test).
The vocabulary is every distinct character of the whole text, sorted by code
point, so valid and test never hold an unknown symbol.

The helpers here (code points as a numpy array, a sorted character vocabulary,
encoding against it) are shared with `ptb` and `builtin`; they never build a
Python list per character.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from lstmlab.corpora import store
from lstmlab.errors import CorpusError, UsageError
from lstmlab.tokenizers import CharTokenizer

if TYPE_CHECKING:
    from lstmlab.corpora import PrepareRequest

DEFAULT_FRACTIONS = (0.9, 0.05, 0.05)
MAX_VOCAB = 1 << 16  # ids are stored as uint16 at most


def parse_fractions(text: str) -> tuple[float, float, float]:
    """'0.9,0.05,0.05' -> (0.9, 0.05, 0.05), checked (UsageError otherwise)."""
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise UsageError(
            f"--fractions {text!r} is not three comma-separated numbers",
            hint="e.g. --fractions 0.9,0.05,0.05",
        ) from None
    return check_fractions(values)


def check_fractions(values: Sequence[float]) -> tuple[float, float, float]:
    """Three positive train/valid/test fractions summing to 1."""
    values = tuple(float(v) for v in values)
    if (
        len(values) != 3
        or not all(math.isfinite(v) and v > 0 for v in values)
        or not math.isclose(sum(values), 1.0, abs_tol=1e-6)
    ):
        raise UsageError(
            f"fractions {', '.join(f'{v:g}' for v in values)} are not three positive numbers summing to 1",
            hint="e.g. --fractions 0.9,0.05,0.05 (train, valid, test)",
        )
    return values  # type: ignore[return-value]


def split_bounds(n: int, fractions: Sequence[float], what: str) -> tuple[int, int]:
    """End offsets of train and valid in a sequence of `n` items; every split non-empty."""
    train_end = int(n * fractions[0])
    valid_end = int(n * (fractions[0] + fractions[1]))
    sizes = (train_end, valid_end - train_end, n - valid_end)
    if min(sizes) == 0:
        raise CorpusError(
            f"{what} has {n:,} characters, too few to split by {', '.join(f'{f:g}' for f in fractions)} "
            f"(train/valid/test would get {sizes[0]}/{sizes[1]}/{sizes[2]})",
            hint="use more text or larger valid/test fractions",
        )
    return train_end, valid_end


def codepoints(text: str) -> np.ndarray:
    """The text's characters as a uint32 array of code points (one copy, no Python objects)."""
    return np.frombuffer(text.encode("utf-32-le"), dtype="<u4")


def char_vocabulary(cps: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Sorted distinct characters of `cps` and their code points."""
    codes = np.unique(cps)
    if codes.size > MAX_VOCAB:
        raise CorpusError(
            f"the text has {codes.size:,} distinct characters; at most {MAX_VOCAB:,} fit a corpus"
        )
    return [chr(c) for c in codes.tolist()], codes


def encode_codepoints(cps: np.ndarray, codes: np.ndarray, what: str) -> np.ndarray:
    """Ids of `cps` in the sorted vocabulary `codes`; a character outside it is a CorpusError."""
    ids = np.searchsorted(codes, cps)
    found = codes[np.minimum(ids, codes.size - 1)] == cps
    if not found.all():
        missing = sorted({chr(c) for c in np.unique(cps[~found]).tolist()})
        shown = ", ".join(repr(c) for c in missing[:10]) + (
            f" and {len(missing) - 10} more" if len(missing) > 10 else ""
        )
        raise CorpusError(
            f"{what} uses {len(missing)} symbol(s) absent from the training split: {shown}"
        )
    return ids


def decode_utf8(data: bytes, where: str) -> str:
    """Strict UTF-8 decoding; the error names the file and the byte offset."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CorpusError(
            f"{where} is not UTF-8 text: byte {exc.start:,} is {data[exc.start : exc.start + 1]!r}",
            hint="convert it to UTF-8 first (e.g. iconv -f latin1 -t utf-8)",
        ) from None


def write_char_corpus(
    request: PrepareRequest, name: str, text: str, *, fractions, sources, extra, what: str
) -> store.Corpus:
    """Split `text` by fractions, tokenise it over its own characters and write the corpus."""
    fractions = check_fractions(fractions)
    train_end, valid_end = split_bounds(len(text), fractions, what)
    texts = {
        "train": text[:train_end],
        "valid": text[train_end:valid_end],
        "test": text[valid_end:],
    }
    extra = {**extra, "fractions": list(fractions)}
    return write_char_splits(request, name, texts, sources=sources, extra=extra)


def write_char_splits(
    request: PrepareRequest, name: str, texts: dict[str, str], *, sources, extra
) -> store.Corpus:
    """Tokenise the three split texts over every character they use and write the corpus."""
    cps = {split: codepoints(texts[split]) for split in store.SPLITS}
    symbols, codes = char_vocabulary(np.concatenate(list(cps.values())))
    # every character is in the vocabulary by construction
    splits = {split: np.searchsorted(codes, cps[split]) for split in store.SPLITS}
    return store.write_corpus(
        request.data_dir,
        name,
        CharTokenizer(symbols),
        splits,
        sources=sources,
        extra=extra,
        replace=request.force,
        reading=request.reading,
    )


def prepare(request: PrepareRequest) -> store.Corpus:
    """Build a character corpus from the FILEs in `request.inputs` (or the one `--source` file)."""
    request.check("text", options=("fractions",), inputs=True)
    if request.inputs and request.source is not None:
        raise UsageError("text takes its files as FILE arguments or one --source, not both")
    paths = [Path(p) for p in request.inputs] or (
        [Path(request.source)] if request.source is not None else []
    )
    if not paths:
        raise UsageError(
            "text needs at least one FILE", hint="e.g. `lstmlab prepare text book.txt`"
        )
    for path in paths:
        if not path.is_file():
            raise UsageError(f"{path} is not a file" if path.exists() else f"{path} does not exist")
    name = request.folder_name("text")
    fractions = check_fractions(request.options.get("fractions", DEFAULT_FRACTIONS))
    parts, sources = [], {}
    with request.progress.task("read text", total=len(paths)) as task:
        for path in paths:
            data = path.read_bytes()
            if not data:
                raise CorpusError(f"{path} is empty", hint="pass a file with some text in it")
            sources[str(path)] = hashlib.sha256(data).hexdigest()
            parts.append(decode_utf8(data, str(path)))
            task.advance()
    what = str(paths[0]) if len(paths) == 1 else f"the {len(paths)} files"
    return write_char_corpus(
        request,
        name,
        "\n".join(parts),
        fractions=fractions,
        sources=sources,
        extra={"files": [str(p) for p in paths]},
        what=what,
    )
