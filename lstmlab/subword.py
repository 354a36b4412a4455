"""sentencepiece subword vocabularies that decode back to the exact text.

Kudo & Richardson, "SentencePiece: A simple and language independent subword
tokenizer and detokenizer for Neural Text Processing", EMNLP 2018 demo,
arXiv:1808.06226 (unigram LM of arXiv:1804.10959, or BPE).

The model is trained on the train split only and set up so that decoding
gives back the original text exactly:

- no normalisation (`identity`), no dummy prefix, spaces kept as they are
  (a space is the piece symbol "▁");
- byte fallback: a character the pieces do not cover is spelt as its UTF-8
  bytes, so valid and test never hold an unknown symbol;
- sentencepiece reads lines, so the text is split at "\\n" and a newline is
  one extra id after the model's own (vocabulary = pieces + 1).

Decoding maps each id to the bytes it stands for and joins them, so any
run of ids decodes (sampling decodes one id at a time). `char_lengths()[id]`
is how many characters of the text an id stands for: the length of a
piece's text; for a byte piece 1 if it starts a UTF-8 character and 0 for a
continuation byte, so the lengths of a text's ids add up to exactly its
number of characters and bits per character divide by the original text.

The serialized model travels inside the tokenizer's metadata (base64), so a
checkpoint alone rebuilds the tokenizer; the corpus folder also keeps it as
`spm.model` for other tools. `corpora/reencode.py` turns any prepared corpus
into a sentencepiece one.

Shapes: N tokens of a split; V = pieces + 1.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
import sentencepiece as spm

from lstmlab.errors import CorpusError, UsageError, VocabularyError

PIECE_SPACE = "\u2581"  # sentencepiece's visible space "▁"
MODEL_FILE = "spm.model"
MAX_VOCAB = 1 << 16  # ids are stored as uint16 at most
MIN_VOCAB = 260  # 256 byte pieces + <unk> + a few real pieces + the newline id
MAX_TRAIN_LINES = 2_000_000  # sentencepiece's input_sentence_size: lines sampled for training
MAX_LINE_BYTES = 1 << 16  # longer lines are skipped in training (still encoded)


@dataclass(frozen=True)
class SubwordOptions:
    """What `prepare --tokenizer sentencepiece` asks for."""

    vocab_size: int = 1024
    model_type: Literal["unigram", "bpe"] = "unigram"

    def __post_init__(self) -> None:
        if not MIN_VOCAB <= self.vocab_size <= MAX_VOCAB:
            raise UsageError(
                f"--vocab-size {self.vocab_size} is out of range",
                hint=f"use {MIN_VOCAB}..{MAX_VOCAB} (256 byte pieces are always part of the vocabulary)",
            )
        if self.model_type not in ("unigram", "bpe"):
            raise UsageError(f"--model-type {self.model_type!r} is not unigram or bpe")


class SentencePieceTokenizer:
    """Subword ids from a sentencepiece model, plus one newline id; decodes to the exact text."""

    kind = "sentencepiece"

    def __init__(self, model_proto: bytes) -> None:
        self.model_proto = bytes(model_proto)
        try:
            self.sp = spm.SentencePieceProcessor(model_proto=self.model_proto)
        except RuntimeError:
            raise CorpusError(
                "the sentencepiece model in the corpus metadata is corrupt",
                hint="prepare the corpus again",
            ) from None
        pieces = self.sp.vocab_size()
        self.newline_id = pieces
        surfaces, lengths = [], []
        for i in range(pieces):
            piece = self.sp.id_to_piece(i)
            if self.sp.is_byte(i):  # "<0xAB>"
                value = int(piece[3:5], 16)
                surfaces.append(bytes([value]))
                lengths.append(
                    0 if 0x80 <= value < 0xC0 else 1
                )  # continuation bytes add no character
            elif self.sp.is_control(i) or self.sp.is_unknown(i):
                surfaces.append(b"")
                lengths.append(0)
            else:
                text = piece.replace(PIECE_SPACE, " ")
                surfaces.append(text.encode("utf-8"))
                lengths.append(len(text))
        surfaces.append(b"\n")
        lengths.append(1)
        self._surfaces = surfaces
        self._lengths = np.array(lengths, dtype=np.int64)

    @property
    def vocab_size(self) -> int:
        return len(self._surfaces)

    def encode(self, text: str) -> list[int]:
        if PIECE_SPACE in text:
            raise VocabularyError(
                f"text contains {PIECE_SPACE!r} (U+2581), which sentencepiece reserves for a space",
                hint="replace it before encoding",
            )
        ids: list[int] = []
        for k, line_ids in enumerate(self.sp.encode(text.split("\n"))):
            if k:
                ids.append(self.newline_id)
            ids.extend(line_ids)
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        return b"".join(self._surfaces[int(i)] for i in ids).decode("utf-8", errors="replace")

    def char_lengths(self) -> np.ndarray:
        return self._lengths.copy()

    def to_meta(self) -> dict:
        return {
            "kind": self.kind,
            "model": base64.b64encode(self.model_proto).decode("ascii"),
            "file": MODEL_FILE,
        }


def from_meta(meta: Mapping, corpus_dir=None) -> SentencePieceTokenizer:
    """Rebuild from `to_meta` (the model bytes are in the dict: a checkpoint needs no corpus)."""
    try:
        proto = base64.b64decode(meta["model"], validate=True)
    except (KeyError, TypeError, ValueError):
        raise CorpusError(
            "sentencepiece tokenizer metadata lacks a valid model", hint="prepare the corpus again"
        ) from None
    return SentencePieceTokenizer(proto)


def train_sentencepiece(
    text: str, options: SubwordOptions, *, num_threads: int = 1
) -> SentencePieceTokenizer:
    """Train on `text` (the train split) with settings that make decoding exact."""
    lines = [line for line in text.split("\n") if line]
    if not lines:
        raise CorpusError("the train split has no text to train sentencepiece on")
    proto = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(lines),
            model_writer=proto,
            vocab_size=options.vocab_size - 1,  # the newline id is the last one
            model_type=options.model_type,
            character_coverage=1.0,
            byte_fallback=True,
            normalization_rule_name="identity",
            add_dummy_prefix=False,
            remove_extra_whitespaces=False,
            split_digits=False,
            unk_id=0,
            bos_id=-1,
            eos_id=-1,
            pad_id=-1,
            hard_vocab_limit=False,
            input_sentence_size=MAX_TRAIN_LINES,
            shuffle_input_sentence=True,
            max_sentence_length=MAX_LINE_BYTES,
            num_threads=num_threads,
            minloglevel=2,
        )
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[-1] if str(exc).strip() else "training failed"
        raise CorpusError(
            f"sentencepiece could not train a {options.vocab_size}-piece {options.model_type} model: {first}",
            hint="use a smaller --vocab-size or more training text",
        ) from None
    return SentencePieceTokenizer(proto.getvalue())
