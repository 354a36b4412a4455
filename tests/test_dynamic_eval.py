"""Dynamic evaluation: scores before it adapts, follows the paper's update, helps on repeated text."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lstmlab.cells import CELLS
from lstmlab.config import DynamicEvalConfig, ModelConfig
from lstmlab.dynamic_eval import DynamicEvaluator, decay_rates, dynamic_evaluate, gradient_rms
from lstmlab.evaluate import evaluate
from lstmlab.model import build_model

V = 13


def _model(kind: str = "lstm", seed: int = 0):
    torch.manual_seed(seed)
    cell = CELLS[kind].config(hidden_dim=8)  # the registry's smallest valid config per cell
    # U(±0.1) embeddings: a near-uniform start, so random text scores about log V (the
    # default N(0, 1) makes lr=1.0 updates below overshoot and the comparison meaningless)
    cfg = ModelConfig(
        embed_dim=6, num_layers=2, cell=cell, embed_init={"dist": "uniform", "scale": 0.1}
    )
    return build_model(cfg, vocab_size=V).eval()


def _rms(model, seed: int = 1):
    train = np.random.default_rng(seed).integers(0, V, size=400)
    return gradient_rms(model, train, batch_size=4, segment_len=5)


def test_gradient_rms_is_root_mean_square_of_window_gradients():
    model = _model()
    train = np.random.default_rng(3).integers(0, V, size=41)  # 2 streams x 20 pairs -> 4 windows
    rms = gradient_rms(model, train, batch_size=2, segment_len=5)
    # independent reference: the same windows built by hand, squared gradients averaged
    L = 20
    state = model.initial_state(2)
    squares = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    for start in range(0, L, 5):
        x = torch.as_tensor(np.stack([train[b * L + start : b * L + start + 5] for b in range(2)]))
        y = torch.as_tensor(
            np.stack([train[b * L + start + 1 : b * L + start + 6] for b in range(2)])
        )
        logits, state = model(x, state)
        state = [type(s)(*(t.detach() for t in s)) for s in state]
        grads = torch.autograd.grad(
            F.cross_entropy(logits.reshape(-1, V), y.reshape(-1)), list(model.parameters())
        )
        for (n, _), g in zip(model.named_parameters(), grads):
            squares[n] += g**2
    for n, sq in squares.items():
        torch.testing.assert_close(rms[n], (sq / 4).sqrt())


def test_decay_rates_are_normalised_and_capped():
    rms = {"a": torch.tensor([1.0, 3.0]), "b": torch.tensor([0.0, 100.0])}
    rates = decay_rates(rms, decay=0.02)  # mean of tensor means: (2 + 50) / 2 = 26
    torch.testing.assert_close(rates["a"], torch.tensor([1 / 26, 3 / 26]))
    torch.testing.assert_close(rates["b"], torch.tensor([0.0, 100 / 26]))
    capped = decay_rates(rms, decay=0.5)  # lambda * d may not exceed 1
    assert float(capped["b"][1]) == pytest.approx(2.0)


def test_one_update_follows_the_paper_formula():
    model = _model()
    rms = _rms(model)
    cfg = DynamicEvalConfig(lr=1e-2, decay=0.1, eps=1e-3)
    evaluator = DynamicEvaluator(model, rms, cfg)
    theta0 = {n: p.detach().clone() for n, p in model.named_parameters()}
    with torch.no_grad():  # move away from theta0 so the decay term is not zero
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    moved = {n: p.detach().clone() for n, p in model.named_parameters()}
    x = torch.tensor([[1, 2, 3, 4]])
    y = torch.tensor([[2, 3, 4, 5]])
    logits, _ = model(x, model.initial_state(1))
    grads = torch.autograd.grad(
        F.cross_entropy(logits.reshape(-1, V), y.reshape(-1)), list(model.parameters())
    )
    evaluator.score(x, y, model.initial_state(1))
    evaluator.update()
    global_mean = sum(float(r.mean()) for r in rms.values()) / len(rms)
    for (n, p), g in zip(model.named_parameters(), grads):
        d = torch.clamp(rms[n] / global_mean, max=1 / 0.1)
        want = moved[n] - 1e-2 * g / (rms[n] + 1e-3) + 0.1 * d * (theta0[n] - moved[n])
        torch.testing.assert_close(p.detach(), want)


def test_no_update_equals_static_evaluation_and_weights_are_restored():
    model = _model()
    tokens = np.random.default_rng(4).integers(0, V, size=123)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    rms = _rms(model)
    dyn = dynamic_evaluate(model, tokens, rms, DynamicEvalConfig(lr=0.0, decay=0.0))
    static = evaluate(model, tokens, batch_size=1, bptt=50)
    assert dyn.tokens == static.tokens == 122 and dyn.chars == static.chars
    assert dyn.nats == pytest.approx(static.nats, rel=1e-5)
    adapted = dynamic_evaluate(model, tokens, rms, DynamicEvalConfig(lr=1e-3))
    assert adapted.nats != pytest.approx(static.nats, rel=1e-5)  # the updates did something
    for n, p in model.named_parameters():
        assert torch.equal(p, before[n])  # trained weights are back afterwards


@pytest.mark.parametrize("kind", sorted(CELLS))
def test_a_token_is_scored_before_any_update_that_saw_it(kind):
    """Change the text from position p on: no earlier prediction may move, even mid-segment."""
    model = _model(kind)
    cfg = DynamicEvalConfig(lr=3e-2, decay=0.0, segment_len=7)
    rms = _rms(model)
    tokens = np.random.default_rng(5).integers(0, V, size=60)
    altered = tokens.copy()
    p = 24  # inside the 4th segment (targets 21..27)
    altered[p:] = (altered[p:] + 1) % V
    a = DynamicEvaluator(model, rms, cfg).token_nats(tokens)
    b = DynamicEvaluator(model, rms, cfg).token_nats(altered)
    # nats[j] predicts tokens[j + 1]: targets before p are identical, bit for bit
    np.testing.assert_array_equal(a[: p - 1], b[: p - 1])
    assert not np.allclose(a[p:], b[p:])  # and the change is visible afterwards


def test_random_text_gains_nothing_but_an_update_first_evaluator_would():
    """Random tokens: honest dynamic eval cannot beat log V; scoring after updating would."""
    model = _model()
    cfg = DynamicEvalConfig(lr=1.0, decay=0.0, segment_len=10)
    rms = _rms(model)
    tokens = np.random.default_rng(6).integers(0, V, size=301)
    honest = DynamicEvaluator(model, rms, cfg).token_nats(tokens).mean()

    peeker = DynamicEvaluator(model, rms, cfg)  # adapts on each segment, then scores it
    peeked, state = [], model.initial_state(1)
    ids = torch.as_tensor(tokens)
    for start in range(0, 300, 10):
        x, y = ids[None, start : start + 10], ids[None, start + 1 : start + 11]
        for _ in range(3):
            peeker.score(x, y, state)
            peeker.update()
        nats, state = peeker.score(x, y, state)
        peeked.append(nats)
    peeker.restore()
    peeked_mean = float(torch.cat(peeked).mean())
    assert honest > np.log(V) - 0.1
    assert peeked_mean < honest - 0.5


def test_dynamic_evaluation_learns_a_pattern_repeated_in_the_test_text():
    model = _model()
    pattern = np.random.default_rng(7).integers(0, V, size=9)
    tokens = np.tile(pattern, 60)
    static = evaluate(model, tokens, batch_size=1, bptt=50)
    dyn = dynamic_evaluate(
        model, tokens, _rms(model), DynamicEvalConfig(lr=3e-3, decay=1e-3, segment_len=5)
    )
    assert dyn.bpc < static.bpc - 1.0


def test_dynamic_settings_overrides_validate_and_name_the_flag():
    import math

    from lstmlab.config import DynamicEvalConfig
    from lstmlab.dynamic_eval import dynamic_settings
    from lstmlab.errors import UsageError

    base = DynamicEvalConfig()
    got = dynamic_settings(base, {"lr": 1e-3, "decay": None, "segment_len": 7})
    assert (got.lr, got.decay, got.segment_len) == (1e-3, base.decay, 7)
    assert dynamic_settings(base, None) == base
    for overrides, flag in (
        ({"lr": math.inf}, "--dyn-lr"),
        ({"lr": math.nan}, "--dyn-lr"),
        ({"decay": 1.5}, "--dyn-decay"),
        ({"ms_tokens": 0}, "--ms-tokens"),
        ({"nope": 1}, "nope"),
    ):
        with pytest.raises(UsageError, match=flag):
            dynamic_settings(base, overrides)
