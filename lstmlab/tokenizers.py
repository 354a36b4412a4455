"""Vocabularies: map text to token ids and back.

Tokenizer kinds share one small interface (`encode`, `decode`, `char_lengths`,
`to_meta`), so training, evaluation and sampling never ask which one they have:

- `char`: one id per symbol of a fixed list (PTB's 50 symbols, any text's characters).
  `aliases` map user-typed characters onto symbols (PTB spells a space `_`), and
  `display` maps symbols back for printing.
- `byte`: the 256 byte values are the ids (enwik8).
- `sentencepiece`: subword pieces plus a newline id (`lstmlab.subword`).

`char_lengths()[id]` is how many characters of the original text token `id`
stands for; bits per character divide by the sum of it, so subword and
character models compare in one table.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType

import numpy as np

from lstmlab.errors import CorpusError, VocabularyError


def _describe(chars: Iterable[str], limit: int = 10) -> str:
    shown = sorted(set(chars))
    text = ", ".join(repr(c) for c in shown[:limit])
    return text + (f" and {len(shown) - limit} more" if len(shown) > limit else "")


class CharTokenizer:
    """One id per symbol; symbols are single characters (PTB's `\\n` is its end-of-line)."""

    kind = "char"

    def __init__(
        self,
        symbols: Sequence[str],
        *,
        aliases: Mapping[str, str] | None = None,
        display: Mapping[str, str] | None = None,
    ) -> None:
        if len(set(symbols)) != len(symbols):
            raise CorpusError("the character vocabulary lists a symbol twice")
        self.symbols = list(symbols)
        self.aliases = dict(aliases or {})
        self.display = dict(display or {})
        self._ids = {s: i for i, s in enumerate(self.symbols)}

    @property
    def vocab_size(self) -> int:
        return len(self.symbols)

    def encode(self, text: str) -> list[int]:
        mapped = [self.aliases.get(ch, ch) for ch in text]
        unknown = [ch for ch, m in zip(text, mapped) if m not in self._ids]
        if unknown:
            raise VocabularyError(
                f"text has {len(unknown)} character(s) outside the vocabulary: {_describe(unknown)}",
                hint=f"use only these symbols: {''.join(sorted(s for s in self.symbols if s.isprintable()))}",
            )
        return [self._ids[m] for m in mapped]

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self.display.get(self.symbols[i], self.symbols[i]) for i in ids)

    def char_lengths(self) -> np.ndarray:
        return np.ones(self.vocab_size, dtype=np.int64)

    def to_meta(self) -> dict:
        return {
            "kind": self.kind,
            "symbols": self.symbols,
            "aliases": self.aliases,
            "display": self.display,
        }


class ByteTokenizer:
    """The 256 byte values are the ids; text is encoded as UTF-8."""

    kind = "byte"
    vocab_size = 256

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: Iterable[int]) -> str:
        return bytes(int(i) for i in ids).decode("utf-8", errors="replace")

    def char_lengths(self) -> np.ndarray:
        return np.ones(self.vocab_size, dtype=np.int64)

    def to_meta(self) -> dict:
        return {"kind": self.kind}


def _char_from_meta(meta: Mapping, corpus_dir=None) -> CharTokenizer:
    return CharTokenizer(meta["symbols"], aliases=meta.get("aliases"), display=meta.get("display"))


def _byte_from_meta(meta: Mapping, corpus_dir=None) -> ByteTokenizer:
    return ByteTokenizer()


def _sentencepiece_from_meta(meta: Mapping, corpus_dir=None):
    from lstmlab.subword import from_meta  # sentencepiece is loaded only when a corpus uses it

    return from_meta(meta, corpus_dir)


# kind -> factory(meta, corpus_dir). A new tokenizer is a new class + one line here.
TOKENIZERS = MappingProxyType(
    {"char": _char_from_meta, "byte": _byte_from_meta, "sentencepiece": _sentencepiece_from_meta}
)


def tokenizer_from_meta(meta: Mapping, corpus_dir=None):
    """Rebuild a tokenizer from the dict its `to_meta` wrote (in meta.json or a checkpoint)."""
    factory = TOKENIZERS.get(meta.get("kind"))
    if factory is None:
        raise CorpusError(f"unknown tokenizer kind {meta.get('kind')!r} in corpus metadata")
    return factory(meta, corpus_dir)
