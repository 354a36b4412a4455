"""bpc over a split equals the brute-force sum of per-token losses, whatever the batching."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from lstmlab.config import ModelConfig
from lstmlab.evaluate import TEMPERATURE_GRID, evaluate, evaluate_temperatures, tune_temperature
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


def test_temperatures_in_one_pass_equal_separate_passes_and_brute_force():
    model = _model()
    tokens = np.random.default_rng(3).integers(0, 11, size=120)
    many = evaluate_temperatures(model, tokens, (0.8, 0.9, 1.0), batch_size=3, bptt=10)
    for t in (0.8, 0.9, 1.0):
        assert (
            abs(many[t].nats - evaluate(model, tokens, batch_size=3, bptt=10, temperature=t).nats)
            < 1e-4
        )
    with torch.no_grad():
        logits, _ = model(torch.as_tensor(tokens[None, :-1]), model.initial_state(1))
        nats = F.cross_entropy(logits[0] / 0.8, torch.as_tensor(tokens[1:]), reduction="sum").item()
    one_stream = evaluate_temperatures(model, tokens, (0.8,), batch_size=1, bptt=10)
    assert abs(one_stream[0.8].nats - nats) < 1e-3


def test_tune_temperature_picks_the_best_valid_temperature():
    model = _model()
    with torch.no_grad():
        model.head.weight.mul_(8.0)  # an over-confident model: a temperature above 1 would help
    tokens = np.random.default_rng(4).integers(0, 11, size=150)
    assert (
        TEMPERATURE_GRID[0] == 0.8 and TEMPERATURE_GRID[-1] == 1.0 and len(TEMPERATURE_GRID) == 11
    )
    best, results = tune_temperature(model, tokens, batch_size=2, bptt=16)
    assert set(results) == set(TEMPERATURE_GRID)
    assert results[best].bpc == min(r.bpc for r in results.values())
    assert best == 1.0  # bpc falls monotonically towards the largest temperature here
    best_low, _ = tune_temperature(model, tokens, grid=(0.5, 0.7), batch_size=2, bptt=16)
    assert best_low == 0.7
