"""The mLSTM block: parameter formula, gradcheck, carried state (memory and conv buffer), init."""

from __future__ import annotations

import pytest
import torch

from lstmlab.cells import build_layer
from lstmlab.cells.configs import MLSTMConfig
from lstmlab.cells.gating import mlstm_recurrent
from lstmlab.cells.mlstm import MLSTMCell, MLSTMState
from lstmlab.errors import ConfigError

from support import check_carried_state


def _block(d=16, heads=4, chunk=4, input_dim=None) -> MLSTMCell:
    torch.manual_seed(0)
    cfg = MLSTMConfig(hidden_dim=d, num_heads=heads, chunk_size=chunk)
    return build_layer(cfg, input_dim or d)


def test_parameter_count_matches_the_reference_formula():
    d, NH = 128, 4
    D = 256  # round_up(2d, 64)
    block = _block(d, NH)
    expected = 3 * D * d + 12 * D + 5 * D + 2 * (3 * D * NH + NH) + 2 * D + d
    assert expected == 109_448
    assert sum(p.numel() for p in block.parameters()) == expected


def test_docstring_separates_it_from_krause():
    import lstmlab.cells.mlstm as module

    assert "NOT Krause" in module.__doc__ and "2405.04517" in module.__doc__


def test_init_follows_the_paper():
    block = _block(d=16, heads=4)
    torch.testing.assert_close(block.fgate.bias.data, torch.linspace(3.0, 6.0, 4))
    assert block.fgate.weight.abs().sum() == 0 and block.igate.weight.abs().sum() == 0
    assert torch.equal(block.skip.data, torch.ones(block.inner_dim))
    assert abs(block.up.weight.std().item() - (2 / (5 * 16)) ** 0.5) < 0.02


def test_two_windows_equal_one_long_window_and_steps_match():
    block = _block(chunk=4).double().eval()
    x = torch.randn(2, 19, 16, dtype=torch.float64)
    s_full = check_carried_state(block, x, split=7)  # windows span several chunks of 4
    # the conv buffer holds the last K − 1 = 3 inputs u of the block
    u = block.up(block.norm(x))[..., : block.inner_dim]
    torch.testing.assert_close(s_full.conv, u[:, -3:])


def test_sampling_steps_without_grad_equal_one_window_and_leave_the_state_alone():
    block = _block(chunk=4).double().eval()
    x = torch.randn(2, 11, 16, dtype=torch.float64)
    with torch.no_grad():
        s = check_carried_state(block, x, split=5)
        kept = [t.clone() for t in s]
        block.step(x[:, 0], s)
    for a, b in zip(s, kept):  # a caller may keep a state it has stepped from
        assert torch.equal(a, b)


def test_a_single_step_gradchecks_from_a_carried_state():
    block = _block(d=8, heads=2, chunk=2).double()
    with torch.no_grad():
        _, s = block(torch.randn(1, 5, 8, dtype=torch.float64), block.initial_state(1))
    x = torch.randn(1, 1, 8, dtype=torch.float64, requires_grad=True)
    C, n = (t.clone().requires_grad_() for t in s[:2])

    def one_step(x, C, n):
        return block(x, MLSTMState(C, n, s.m, s.conv))[0]

    assert torch.autograd.gradcheck(one_step, (x, C, n), fast_mode=True)


def test_gradcheck_in_float64():
    block = _block(d=8, heads=2, chunk=2).double()
    x = torch.randn(1, 5, 8, dtype=torch.float64, requires_grad=True)
    s0 = block.initial_state(1, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: block(x, s0)[0], (x,), fast_mode=True)


def test_forward_equals_the_block_formula_with_concatenated_gate_inputs():
    """The window kernel (folded gate weights, head-major q, k, v) changes no result: compare
    the block with its docstring formula, written the plain way, in float64."""
    block = _block(d=16, heads=2, chunk=4).double()
    for p in block.parameters():  # nonzero gate weights and norm weights
        p.data.add_(0.1 * torch.randn_like(p))
    x = torch.randn(2, 9, 16, dtype=torch.float64)
    s0 = block.initial_state(2, dtype=torch.float64)
    u, z = block.up(block.norm(x)).chunk(2, dim=-1)
    conv_in = torch.cat([s0.conv, u], dim=1).transpose(1, 2)  # (B, D, K − 1 + T)
    u_conv = torch.nn.functional.silu(block.conv.conv(conv_in).transpose(1, 2))
    q, k, v = block.q(u_conv), block.k(u_conv), block.v(u)
    qkv = torch.cat([q, k, v], dim=-1)
    i_pre, f_pre = (gate(qkv).transpose(1, 2) for gate in (block.igate, block.fgate))

    def heads(t):
        return t.unflatten(-1, (2, block.head_dim)).transpose(1, 2)  # (B, NH, T, DH)

    h, _ = mlstm_recurrent(heads(q), heads(k), heads(v), i_pre, f_pre, s0[:3])
    h = block.head_norm(h.transpose(1, 2).flatten(2))
    ref = x + block.down((h + block.skip * u_conv) * torch.nn.functional.silu(z))
    y, _ = block(x, s0)
    torch.testing.assert_close(y, ref, rtol=0, atol=1e-10)


def test_a_different_input_width_is_lifted_onto_the_stream():
    block = _block(d=16, input_dim=6)
    y, _ = block(torch.randn(2, 3, 6), block.initial_state(2))
    assert y.shape == (2, 3, 16)


def test_bad_settings_are_config_errors():
    with pytest.raises(ConfigError, match="num_heads"):
        build_layer(MLSTMConfig(hidden_dim=16, num_heads=5), 16)
    with pytest.raises(ConfigError, match="DropConnect"):
        build_layer(MLSTMConfig(hidden_dim=16), 16, weight_dropout=0.2)
