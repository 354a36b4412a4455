"""The `lstm` cell against torch.nn.LSTM, its own step loop, and finite differences."""

from __future__ import annotations

import pytest
import torch

from lstmlab.cells import build_layer
from lstmlab.cells.configs import LSTMConfig
from lstmlab.cells.lstm import LSTMState, lstm_pointwise

from support import assert_dropout_only_in_training, gradcheck_cell


def _pair(input_dim=5, hidden=8, dtype=torch.float32, **cfg):
    torch.manual_seed(0)
    cell = build_layer(LSTMConfig(hidden_dim=hidden, **cfg), input_dim).to(dtype)
    ref = torch.nn.LSTM(input_dim, hidden, batch_first=True).to(dtype)
    with torch.no_grad():
        ref.weight_ih_l0.copy_(cell.weight_ih)
        ref.weight_hh_l0.copy_(cell.weight_hh)
        ref.bias_ih_l0.copy_(cell.bias_ih)
        ref.bias_hh_l0.copy_(cell.bias_hh)
    return cell, ref


def test_matches_torch_lstm_with_copied_weights():
    cell, ref = _pair()
    x = torch.randn(3, 11, 5)
    h0, c0 = torch.randn(3, 8), torch.randn(3, 8)
    y, state = cell(x, LSTMState(h0, c0))
    y_ref, (h_ref, c_ref) = ref(x, (h0[None], c0[None]))
    assert (y - y_ref).abs().max() <= 1e-6
    assert (state.h - h_ref[0]).abs().max() <= 1e-6
    assert (state.c - c_ref[0]).abs().max() <= 1e-6


def test_parameter_layout_and_count_match_torch():
    cell, ref = _pair(input_dim=7, hidden=6)
    assert [p.shape for p in cell.parameters()] == [p.shape for p in ref.parameters()]
    d, dx = 6, 7
    assert sum(p.numel() for p in cell.parameters()) == 4 * d * (dx + d) + 8 * d


def test_carrying_state_across_windows_equals_one_long_window():
    cell, _ = _pair()
    x = torch.randn(2, 20, 5)
    s0 = cell.initial_state(2)
    y_full, s_full = cell(x, s0)
    y1, s1 = cell(x[:, :9], s0)
    y2, s2 = cell(x[:, 9:], s1)
    torch.testing.assert_close(torch.cat([y1, y2], 1), y_full, atol=1e-6, rtol=0)
    torch.testing.assert_close(s2.c, s_full.c, atol=1e-6, rtol=0)


@pytest.mark.parametrize("capped", [False, True])
def test_window_equals_loop_of_steps(capped):
    cell, _ = _pair(dtype=torch.float64, capped_input_gate=capped)
    x = torch.randn(2, 7, 5, dtype=torch.float64)
    s = cell.initial_state(2)
    y_seq, s_seq = cell(x, s)
    outs = []
    for x_t in x.unbind(1):
        h, s = cell.step(x_t, s)
        outs.append(h)
    torch.testing.assert_close(y_seq, torch.stack(outs, 1))
    torch.testing.assert_close(s_seq.c, s.c)


def test_capped_input_gate_against_naive_equations():
    gates = torch.randn(4, 4 * 3, dtype=torch.float64)
    c = torch.randn(4, 3, dtype=torch.float64)
    h, c_new = lstm_pointwise(gates, c, capped_input_gate=True)
    i, f, g, o = (gates[:, k * 3 : (k + 1) * 3] for k in range(4))
    si, sf = 1 / (1 + torch.exp(-i)), 1 / (1 + torch.exp(-f))
    expected_c = sf * c + torch.minimum(si, 1 - sf) * torch.tanh(g)
    torch.testing.assert_close(c_new, expected_c)
    torch.testing.assert_close(h, torch.sigmoid(o) * torch.tanh(expected_c))


@pytest.mark.parametrize("capped", [False, True])
def test_gradcheck_float64(capped):
    cell, _ = _pair(input_dim=3, hidden=4, dtype=torch.float64, capped_input_gate=capped)
    assert gradcheck_cell(cell, LSTMState, steps=4)


def test_forget_bias_sets_total_forget_gate_bias():
    cell = build_layer(LSTMConfig(hidden_dim=5, forget_bias=3.0), 4)
    total = (cell.bias_ih + cell.bias_hh).detach()
    assert torch.all(total[5:10] == 3.0)
    assert not torch.all(total[:5] == 3.0)


def test_weight_dropout_only_while_training_and_fixed_within_window():
    torch.manual_seed(1)
    cell = build_layer(LSTMConfig(hidden_dim=6), 3, weight_dropout=0.5)
    x = torch.randn(2, 5, 3)
    assert_dropout_only_in_training(cell, x, cell.initial_state(2))
