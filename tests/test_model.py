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


@pytest.mark.parametrize("mask", ["window", "step"])
def test_dropout_masks_are_per_window_or_per_step(mask):
    """window: each stream keeps one mask over the window (AWD); step: a new one each step (LAMB).

    Read where the masks act: the first layer's input, the second's (hidden dropout) and the
    softmax's (output dropout), with a constant embedding so a zero means a dropped unit.
    """
    drop = {"input": 0.5, "hidden": 0.5, "output": 0.5, "mask": mask}
    model = build_model(_cfg(num_layers=2, dropout=drop), vocab_size=13).train()
    seen = []
    for module in (model.layers[0], model.layers[1], model.head):
        module.register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach()))
    with torch.no_grad():
        model.embedding.weight.fill_(1.0)
        model.head.weight.fill_(0.0)
        torch.manual_seed(0)
        model(torch.zeros(3, 40, dtype=torch.long), model.initial_state(3))
    for x in seen:  # (B, T, D)
        dropped = x == 0
        same_over_steps = bool((dropped == dropped[:, :1]).all())
        assert same_over_steps == (mask == "window")
        assert 0.3 < dropped.float().mean() < 0.7  # p = 0.5 either way


@pytest.mark.parametrize("kind", ["lstm", "mogrifier", "multiplicative", "slstm", "mlstm"])
def test_restart_streams_resets_exactly_the_chosen_streams(kind):
    """Every state tensor of every cell: the dropped streams get the initial state, the rest keep theirs."""
    from lstmlab.cells import restart_streams

    cell = {"kind": kind, "hidden_dim": 64}
    model = build_model(_cfg(num_layers=2, cell=cell), vocab_size=13).eval()
    initial = model.initial_state(3)
    _, state = model(torch.randint(0, 13, (3, 7)), initial)
    keep = torch.tensor([True, False, True])
    restarted = restart_streams(state, initial, keep)
    for new, old, first in zip(_leaves(restarted), _leaves(state), _leaves(initial), strict=True):
        assert torch.equal(new[keep], old[keep]) and torch.equal(new[~keep], first[~keep])
        assert not torch.equal(old[~keep], first[~keep])  # the carried state had moved


def _leaves(state):
    if isinstance(state, torch.Tensor):
        return [state]
    return [leaf for part in state for leaf in _leaves(part)]


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
