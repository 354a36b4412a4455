"""LanguageModel: shapes, weight tying, AWD dropouts, state carrying."""

from __future__ import annotations

import pytest
import torch

from lstmlab.config import ModelConfig, validate
from lstmlab.errors import ConfigError
from lstmlab.model import build_model, layer_sizes


def _cfg(**kw):
    base = {"embed_dim": 6, "num_layers": 3, "cell": {"kind": "lstm", "hidden_dim": 10}}
    base.update(kw)
    return ModelConfig.model_validate(base)


def test_shapes_and_layer_sizes():
    model = build_model(_cfg(), vocab_size=13)
    ids = torch.randint(0, 13, (4, 9))
    logits, state = model(ids, model.initial_state(4))
    assert logits.shape == (4, 9, 13)
    assert len(state) == 3 and state[-1].h.shape == (4, 10)
    assert layer_sizes(_cfg()) == [(6, 10), (10, 10), (10, 10)]


def test_tied_weights_share_the_embedding_and_shrink_last_layer():
    model = build_model(_cfg(tie_weights=True), vocab_size=13)
    assert model.head.weight is model.embedding.weight
    assert layer_sizes(_cfg(tie_weights=True))[-1] == (10, 6)
    untied = build_model(_cfg(), vocab_size=13)
    assert model.num_parameters() < untied.num_parameters()


def test_dropouts_act_in_training_only():
    torch.manual_seed(0)
    model = build_model(
        _cfg(dropout={"embedding": 0.3, "input": 0.3, "hidden": 0.3, "output": 0.3, "weight": 0.3}),
        vocab_size=13,
    )
    ids = torch.randint(0, 13, (2, 5))
    model.eval()
    a, _ = model(ids, model.initial_state(2))
    b, _ = model(ids, model.initial_state(2))
    torch.testing.assert_close(a, b)
    model.train()
    c, _ = model(ids, model.initial_state(2))
    assert not torch.allclose(a, c)


def test_two_windows_equal_one():
    model = build_model(_cfg(), vocab_size=13).eval()
    ids = torch.randint(0, 13, (2, 12))
    full, _ = model(ids, model.initial_state(2))
    first, s = model(ids[:, :5], model.initial_state(2))
    second, _ = model(ids[:, 5:], s)
    torch.testing.assert_close(torch.cat([first, second], 1), full, atol=1e-6, rtol=0)


def test_output_from_sum_feeds_the_sum_of_layer_outputs_to_the_softmax():
    model = build_model(_cfg(output_from="sum", embed_dim=10), vocab_size=13).eval()
    ids = torch.randint(0, 13, (2, 6))
    logits, _ = model(ids, model.initial_state(2))
    with torch.no_grad():
        x, total = model.embedding(ids), 0
        for layer in model.layers:
            x, _ = layer(x, layer.initial_state(2))
            total = total + x
        torch.testing.assert_close(logits, model.head(total))
    last = build_model(_cfg(embed_dim=10), vocab_size=13).eval()
    last.load_state_dict(model.state_dict())
    assert not torch.allclose(last(ids, last.initial_state(2))[0], logits)


def test_output_from_sum_needs_equal_widths():
    with pytest.raises(ConfigError, match="output_from"):
        validate(
            {
                "data": {"corpus": "x"},
                "model": {**_cfg().model_dump(), "tie_weights": True, "output_from": "sum"},
                "train": {"batch_size": 1, "bptt": 1, "optimizer": {"lr": 1.0}, "max_steps": 1},
            }
        )
    assert _cfg(tie_weights=True, output_from="sum", embed_dim=10).output_from == "sum"


@pytest.mark.parametrize(
    "init,std,bound",
    [
        ({"dist": "normal", "scale": 1.0}, 1.0, None),  # nn.Embedding's default
        ({"dist": "uniform", "scale": 0.1}, 0.1 / 3**0.5, 0.1),  # AWD-LSTM
        (
            {"dist": "truncated_normal", "scale": 0.05},
            0.05,
            2 * 0.05 / 0.8796,
        ),  # LAMB: sd is `scale`
    ],
)
def test_embedding_is_drawn_as_embed_init_says(init, std, bound):
    torch.manual_seed(0)
    weight = build_model(_cfg(embed_init=init, embed_dim=64), vocab_size=4000).embedding.weight
    assert abs(float(weight.std()) / std - 1) < 0.01  # 256,000 draws: sd within 1%
    if bound is not None:
        assert float(weight.abs().max()) <= bound + 1e-6
        assert float(weight.abs().max()) > 0.95 * bound  # the bound is reached, not a narrower one


def test_embed_init_is_strict():
    assert _cfg().embed_init.dist == "normal" and _cfg().embed_init.scale == 1.0
    for bad in (
        {"dist": "xavier", "scale": 1.0},
        {"dist": "normal", "scale": 0.0},
        {"dist": "normal"},
    ):
        with pytest.raises(ValueError):
            _cfg(embed_init=bad)
