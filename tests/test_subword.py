"""sentencepiece tokenizer: exact round trip, exact character counts, self-contained metadata."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lstmlab.errors import UsageError, VocabularyError
from lstmlab.subword import (
    PIECE_SPACE,
    SentencePieceTokenizer,
    SubwordOptions,
    train_sentencepiece,
)
from lstmlab.tokenizers import tokenizer_from_meta

from support import TINY_TEXT


@pytest.fixture(scope="module")
def tok() -> SentencePieceTokenizer:
    return train_sentencepiece(TINY_TEXT, SubwordOptions(vocab_size=300))


TRICKY = [
    "",
    "\n",
    "the quick brown fox",
    "  two  spaces,\ttab and trailing space \n\nblank line above\n",
    "unseen: Ünïcode ∑ 漢字 🙂 and \r\n windows line end",
    "\nleading newline and a final one\n",
]


@pytest.mark.parametrize("text", TRICKY)
def test_decode_gives_back_the_exact_text(tok, text):
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert int(tok.char_lengths()[ids].sum()) == len(text)
    assert all(0 <= i < tok.vocab_size for i in ids)


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_characters=PIECE_SPACE, codec="utf-8")))
def test_round_trip_and_character_count_for_any_text(tok, text):
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert int(tok.char_lengths()[ids].sum()) == len(text)


def test_pieces_are_subwords_and_one_id_decodes_alone(tok):
    ids = tok.encode("the quick brown fox jumps")
    assert len(ids) < len("the quick brown fox jumps")  # pieces span several characters
    assert "".join(tok.decode([i]) for i in ids) == "the quick brown fox jumps"
    assert tok.encode("a\nb")[1] == tok.newline_id == tok.vocab_size - 1


def test_metadata_carries_the_model(tok):
    meta = tok.to_meta()
    again = tokenizer_from_meta(meta, corpus_dir=None)  # no corpus folder needed
    assert again.to_meta() == meta
    assert again.encode(TINY_TEXT[:200]) == tok.encode(TINY_TEXT[:200])
    assert (again.char_lengths() == tok.char_lengths()).all()


def test_reserved_piece_space_and_bad_options_are_errors(tok):
    with pytest.raises(VocabularyError, match="U\\+2581"):
        tok.encode(f"a{PIECE_SPACE}b")
    with pytest.raises(UsageError, match="vocab-size"):
        SubwordOptions(vocab_size=100)
    with pytest.raises(UsageError, match="model-type"):
        SubwordOptions(model_type="word")


def test_bpe_model_round_trips_too():
    bpe = train_sentencepiece(TINY_TEXT, SubwordOptions(vocab_size=300, model_type="bpe"))
    text = "how vexingly quick daft zebras jump? Ωmega\n"
    assert bpe.decode(bpe.encode(text)) == text
