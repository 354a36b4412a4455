"""Character and byte tokenizers: encode/decode, aliases, unknown symbols, metadata round trip."""

from __future__ import annotations

import numpy as np
import pytest

from lstmlab.errors import CorpusError, VocabularyError
from lstmlab.tokenizers import ByteTokenizer, CharTokenizer, tokenizer_from_meta


def test_char_round_trip_with_aliases_and_display():
    tok = CharTokenizer(list("\n_abc"), aliases={" ": "_"}, display={"_": " "})
    ids = tok.encode("ab c\n")
    assert ids == [2, 3, 1, 4, 0]
    assert tok.decode(ids) == "ab c\n"
    assert tok.vocab_size == 5
    np.testing.assert_array_equal(tok.char_lengths(), np.ones(5))


def test_unknown_characters_are_named():
    tok = CharTokenizer(list("abc"))
    with pytest.raises(
        VocabularyError, match=r"2 character\(s\) outside the vocabulary: 'x', 'z'"
    ) as info:
        tok.encode("abxcz")
    assert "abc" in info.value.hint


def test_duplicate_symbols_are_refused():
    with pytest.raises(CorpusError, match="lists a symbol twice"):
        CharTokenizer(list("abca"))


def test_byte_tokenizer():
    tok = ByteTokenizer()
    assert tok.encode("é") == [0xC3, 0xA9]
    assert tok.decode([0x68, 0x69]) == "hi"
    assert tok.vocab_size == 256


@pytest.mark.parametrize(
    "tok", [CharTokenizer(list("ab_"), aliases={" ": "_"}, display={"_": " "}), ByteTokenizer()]
)
def test_meta_round_trip(tok):
    again = tokenizer_from_meta(tok.to_meta())
    assert type(again) is type(tok) and again.to_meta() == tok.to_meta()
    assert again.encode("a b") == tok.encode("a b")


def test_unknown_tokenizer_kind():
    with pytest.raises(CorpusError, match="unknown tokenizer kind 'wordpiece'"):
        tokenizer_from_meta({"kind": "wordpiece"})
