"""`sample_text` (the library behind `lstmlab sample`): whole characters, seeds, windowed primes."""

from __future__ import annotations

import math

import pytest
import torch

from lstmlab import generate as gen
from lstmlab.config import ModelConfig
from lstmlab.errors import UsageError
from lstmlab.generate import generate, read_prime_file, sample_text
from lstmlab.model import build_model
from lstmlab.tokenizers import ByteTokenizer, CharTokenizer

from support import TINY_TEXT


def _model(vocab: int):
    torch.manual_seed(0)
    cfg = ModelConfig.model_validate(
        {"embed_dim": 4, "num_layers": 1, "cell": {"kind": "lstm", "hidden_dim": 6}}
    )
    return build_model(cfg, vocab_size=vocab).eval()


def test_pieces_join_to_the_prime_and_the_generated_symbols():
    tok = CharTokenizer(sorted(set(TINY_TEXT)))
    model = _model(tok.vocab_size)
    pieces = list(sample_text(model, tok, "the ", 30, seed=4))
    ids = list(generate(model, tok.encode("the "), 30, seed=4))
    assert pieces[0] == "the " and "".join(pieces) == "the " + tok.decode(ids)
    assert len(pieces) == 31  # a char tokenizer: one piece per symbol
    quiet = list(sample_text(model, tok, "the ", 30, seed=4, echo=False))
    assert "".join(quiet) == tok.decode(ids)


def test_multi_byte_characters_come_out_whole(monkeypatch):
    tok = ByteTokenizer()
    wanted = list("é☃x".encode()) + [0xFF]  # a lone invalid byte at the end
    monkeypatch.setattr(gen, "generate", lambda *a, **k: iter(wanted))
    pieces = list(sample_text(_model(256), tok, "a", 5, echo=False))
    assert pieces == ["é", "☃", "x", "\ufffd"]


@pytest.mark.parametrize(
    "kwargs,needle",
    [
        ({"temperature": math.nan}, "--temperature"),
        ({"temperature": math.inf}, "--temperature"),
        ({"top_p": math.nan}, "--top-p"),
        ({"seed": 2**64}, "--seed"),
        ({"seed": 99999999999999999999}, "--seed"),
        ({"seed": -1}, "--seed"),
        ({"length": -1}, "--length"),
    ],
)
def test_values_torch_cannot_take_are_usage_errors(kwargs, needle):
    tok = CharTokenizer(sorted(set(TINY_TEXT)))
    args = {"length": 5, **kwargs}
    with pytest.raises(UsageError, match=needle):
        list(sample_text(_model(tok.vocab_size), tok, "the", args.pop("length"), **args))


def test_the_largest_seed_works():
    tok = CharTokenizer(sorted(set(TINY_TEXT)))
    text = "".join(sample_text(_model(tok.vocab_size), tok, "a", 5, seed=2**64 - 1))
    assert len(text) == 6


class _RecordingModel(torch.nn.Module):
    """Logits of zeros, a step counter for state; records each call's width T and grad mode."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.vocab_size, self.widths = vocab, []

    def initial_state(self, batch: int, device=None):
        return torch.zeros(batch, device=device)

    def forward(self, ids, state):
        assert not torch.is_grad_enabled()  # no graph is kept across the prime
        self.widths.append(ids.shape[1])
        return torch.zeros(*ids.shape, self.vocab_size), state + ids.shape[1]


def test_a_megabyte_prime_is_fed_in_bounded_windows():
    """The model never sees more than `window` prime tokens at once: memory flat in the prime."""
    tok = CharTokenizer(sorted(set(TINY_TEXT)))
    model = _RecordingModel(tok.vocab_size)
    prime = (TINY_TEXT * (2**20 // len(TINY_TEXT) + 1))[: 2**20]  # 1 MiB
    out = list(sample_text(model, tok, prime, 3, seed=1, echo=False, window=256))
    assert len(out) == 3
    prime_calls = model.widths[:-3]  # then one T = 1 step after each of the 3 samples
    assert max(model.widths) == 256 and sum(prime_calls) == len(prime)
    assert len(prime_calls) == math.ceil(len(prime) / 256) and model.widths[-3:] == [1, 1, 1]


def test_windowed_prime_equals_one_long_window():
    tok = CharTokenizer(sorted(set(TINY_TEXT)))
    model = _model(tok.vocab_size)
    prime = tok.encode(TINY_TEXT[:700])
    long = list(generate(model, prime, 40, seed=3, window=10_000))
    short = list(generate(model, prime, 40, seed=3, window=64))
    assert long == short
    with pytest.raises(UsageError, match="window"):
        list(generate(model, prime, 2, window=0))


def test_read_prime_file_errors_are_one_line(tmp_path):
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    (tmp_path / "ok.txt").write_text("héllo", encoding="utf-8")
    assert read_prime_file(tmp_path / "ok.txt") == "héllo"
    for name, needle in (
        ("latin1.txt", "not UTF-8"),
        ("missing", "does not exist"),
        ("", "folder"),
    ):
        with pytest.raises(UsageError, match=needle):
            read_prime_file(tmp_path / name)
