"""Sampling filters are pure and exact; generation is seeded and warms on the prime."""

from __future__ import annotations

import pytest
import torch

from lstmlab.config import ModelConfig
from lstmlab.errors import UsageError
from lstmlab.generate import filter_top_k, filter_top_p, generate, next_token
from lstmlab.model import build_model


def test_top_k_keeps_the_k_largest():
    logits = torch.tensor([[1.0, 5.0, 3.0, 4.0]])
    out = filter_top_k(logits, 2)
    assert torch.isinf(out[0, [0, 2]]).all() and out[0, 1] == 5.0 and out[0, 3] == 4.0
    assert torch.equal(filter_top_k(logits, None), logits)


def test_top_p_keeps_the_smallest_nucleus():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    out = filter_top_p(probs.log(), 0.7)
    kept = torch.isfinite(out[0]).tolist()
    assert kept == [True, True, False, False]
    assert torch.isfinite(filter_top_p(probs.log(), 0.4)[0]).tolist() == [True, False, False, False]


def test_temperature_zero_is_greedy():
    logits = torch.tensor([[0.1, 2.0, 1.0]])
    assert next_token(logits, temperature=0.0, top_k=None, top_p=None, generator=None).item() == 1


def test_generation_is_seeded_and_in_vocabulary():
    cfg = ModelConfig.model_validate(
        {"embed_dim": 4, "num_layers": 1, "cell": {"kind": "lstm", "hidden_dim": 6}}
    )
    model = build_model(cfg, vocab_size=9)
    a = list(generate(model, [1, 2, 3], 30, seed=5))
    b = list(generate(model, [1, 2, 3], 30, seed=5))
    c = list(generate(model, [1, 2, 3], 30, seed=6))
    assert a == b and a != c and len(a) == 30 and all(0 <= t < 9 for t in a)


@pytest.mark.parametrize(
    "kwargs", [{"temperature": -1}, {"top_k": 0}, {"top_p": 0.0}, {"top_p": 1.5}]
)
def test_bad_sampling_arguments_are_usage_errors(kwargs):
    cfg = ModelConfig.model_validate(
        {"embed_dim": 4, "num_layers": 1, "cell": {"kind": "lstm", "hidden_dim": 6}}
    )
    with pytest.raises(UsageError):
        list(generate(build_model(cfg, 9), [1], 3, **kwargs))
