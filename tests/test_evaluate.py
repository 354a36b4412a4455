"""bpc over a split equals the brute-force sum of per-token losses, whatever the batching."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from lstmlab.config import ModelConfig
from lstmlab.evaluate import evaluate
from lstmlab.model import build_model


def _model():
    torch.manual_seed(0)
    cfg = ModelConfig.model_validate(
        {"embed_dim": 5, "num_layers": 1, "cell": {"kind": "lstm", "hidden_dim": 7}}
    )
    return build_model(cfg, vocab_size=11).eval()


def test_streams_and_remainder_equal_one_long_pass():
    model = _model()
    tokens = np.random.default_rng(0).integers(0, 11, size=203)
    with torch.no_grad():
        logits, _ = model(torch.as_tensor(tokens[None, :-1]), model.initial_state(1))
        nats = F.cross_entropy(logits[0], torch.as_tensor(tokens[1:]), reduction="sum").item()
    one = evaluate(model, tokens, batch_size=1, bptt=17)
    assert one.tokens == 202 and abs(one.nats - nats) < 1e-3
    assert abs(one.bpc - nats / (math.log(2) * 202)) < 1e-6
    assert abs(one.perplexity - 2**one.bpc) < 1e-9
    many = evaluate(model, tokens, batch_size=6, bptt=9)
    assert many.tokens == 202  # the remainder is scored too


def test_char_lengths_change_the_denominator_only():
    model = _model()
    tokens = np.random.default_rng(1).integers(0, 11, size=50)
    plain = evaluate(model, tokens, batch_size=2, bptt=8)
    doubled = evaluate(model, tokens, batch_size=2, bptt=8, char_lengths=np.full(11, 2))
    assert doubled.chars == 2 * plain.chars
    assert abs(doubled.bpc - plain.bpc / 2) < 1e-9


def test_max_tokens_caps_the_work():
    model = _model()
    tokens = np.random.default_rng(2).integers(0, 11, size=500)
    assert evaluate(model, tokens, batch_size=3, bptt=8, max_tokens=100).tokens == 100
