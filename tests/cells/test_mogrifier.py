"""The `mogrifier` cell against the paper's equations, the `lstm` cell, and finite differences."""

from __future__ import annotations

import pytest
import torch

from lstmlab.cells import build_layer
from lstmlab.cells.configs import LSTMConfig, MogrifierConfig
from lstmlab.cells.lstm import LSTMState
from lstmlab.cells.mogrifier import mogrify

from kernel_support import assert_kernel_without_gradients, window_outputs_and_gradients
from support import gradcheck_cell


def _cell(input_dim=5, hidden=6, dtype=torch.float64, seed=0, **cfg):
    torch.manual_seed(seed)
    cell = build_layer(MogrifierConfig(hidden_dim=hidden, **cfg), input_dim).to(dtype)
    with torch.no_grad():  # non-zero round biases, so a test would notice them being ignored
        for b in cell.mog_bias:
            b.normal_(0.0, 0.3)
    return cell.eval()


def _round_matrix(cell, j):
    """Q_j or R_j, rebuilt independently from the stored factors (einsum, not `@`)."""
    if cell.config.rank is None:
        return cell.mog_weight[j].detach()
    return torch.einsum("ok,ki->oi", cell.mog_left[j].detach(), cell.mog_right[j].detach())


def _naive(cell, x, h0, c0):
    """Paper's equations, round by round (1-based), then torch.nn.LSTMCell with copied weights."""
    ref = torch.nn.LSTMCell(cell.input_dim, cell.hidden_dim).to(x.dtype)
    with torch.no_grad():
        ref.weight_ih.copy_(cell.weight_ih)
        ref.weight_hh.copy_(cell.weight_hh)
        ref.bias_ih.copy_(cell.bias_ih)
        ref.bias_hh.copy_(cell.bias_hh)
    h, c, outs = h0, c0, []
    for t in range(x.shape[1]):
        xx, hh = x[:, t], h
        for j in range(1, cell.config.rounds + 1):
            m, b = _round_matrix(cell, j - 1), cell.mog_bias[j - 1].detach()
            if j % 2 == 1:
                xx = 2 / (1 + torch.exp(-(hh @ m.T + b))) * xx
            else:
                hh = 2 / (1 + torch.exp(-(xx @ m.T + b))) * hh
        h, c = ref(xx, (hh, c))
        outs.append(h)
    return torch.stack(outs, 1), h, c


@pytest.mark.parametrize("rounds,rank", [(1, None), (4, None), (5, 3), (6, 2)])
def test_matches_the_paper_equations(rounds, rank):
    cell = _cell(rounds=rounds, rank=rank)
    x = torch.randn(3, 8, 5, dtype=torch.float64)
    h0, c0 = torch.randn(3, 6, dtype=torch.float64), torch.randn(3, 6, dtype=torch.float64)
    with torch.no_grad():
        y, s = cell(x, LSTMState(h0, c0))
        y_ref, h_ref, c_ref = _naive(cell, x, h0, c0)
    torch.testing.assert_close(y, y_ref)
    torch.testing.assert_close(s.h, h_ref)
    torch.testing.assert_close(s.c, c_ref)


def test_mogrify_alternates_starting_with_x():
    x, h = torch.ones(1, 2, dtype=torch.float64), torch.ones(1, 3, dtype=torch.float64)
    q = torch.zeros(2, 3, dtype=torch.float64)
    big = torch.full((2,), 50.0, dtype=torch.float64)  # 2σ(50) = 2: round 1 doubles x
    x1, h1 = mogrify(x, h, [q], [big])
    torch.testing.assert_close(x1, 2 * x)
    torch.testing.assert_close(h1, h)
    r = torch.zeros(3, 2, dtype=torch.float64)
    low = torch.full((3,), -50.0, dtype=torch.float64)  # 2σ(-50) ≈ 0: round 2 silences h
    x2, h2 = mogrify(x, h, [q, r], [big, low])
    torch.testing.assert_close(x2, 2 * x)
    assert h2.abs().max() < 1e-20


@pytest.mark.parametrize("capped", [False, True])
def test_zero_rounds_is_exactly_lstm(capped):
    common = {"hidden_dim": 6, "forget_bias": 1.0, "capped_input_gate": capped}
    torch.manual_seed(0)
    lstm = build_layer(LSTMConfig(**common), 5)
    mog = build_layer(MogrifierConfig(rounds=0, **common), 5)
    assert list(mog.state_dict()) == list(lstm.state_dict())
    mog.load_state_dict(lstm.state_dict())
    x = torch.randn(2, 9, 5)
    s0 = LSTMState(torch.randn(2, 6), torch.randn(2, 6))
    y_l, s_l = lstm(x, s0)
    y_m, s_m = mog(x, s0)
    assert torch.equal(y_l, y_m) and torch.equal(s_l.c, s_m.c)
    h_l, _ = lstm.step(x[:, 0], s0)
    h_m, _ = mog.step(x[:, 0], s0)
    assert torch.equal(h_l, h_m)


@pytest.mark.parametrize("rounds,rank", [(5, None), (5, 3), (4, 2)])
def test_parameter_count_matches_formula(rounds, rank):
    dx, d = 7, 6
    cell = _cell(input_dim=dx, hidden=d, rounds=rounds, rank=rank)
    n_x, n_h = (rounds + 1) // 2, rounds // 2
    lstm = 4 * d * (dx + d) + 8 * d
    extra = (rounds * dx * d if rank is None else rounds * rank * (dx + d)) + n_x * dx + n_h * d
    assert sum(p.numel() for p in cell.parameters()) == lstm + extra


@pytest.mark.parametrize("rank", [None, 2])
@pytest.mark.parametrize("capped", [False, True])
def test_gradcheck_float64(rank, capped):
    """Through the window Function's hand-written backward (it runs whenever gradients do)."""
    cell = _cell(input_dim=3, hidden=4, rounds=3, rank=rank, capped_input_gate=capped)
    assert gradcheck_cell(cell, LSTMState)


@pytest.mark.parametrize(
    "rounds,rank,capped",
    [(5, 3, False), (4, None, True), (1, 2, True), (6, None, False), (0, None, True)],
)
def test_window_function_matches_the_step_loop(rounds, rank, capped):
    """Parity of the fast path: outputs and every gradient equal autograd through `step` (float64),
    with state dropout and DropConnect on (rounds = 0 takes the Function only in this case)."""
    torch.manual_seed(0)
    config = MogrifierConfig(
        hidden_dim=6, rounds=rounds, rank=rank, capped_input_gate=capped, state_dropout=0.3
    )
    cell = build_layer(config, 5, weight_dropout=0.2).double().train()
    with torch.no_grad():
        for b in cell.mog_bias:
            b.normal_(0.0, 0.3)
    x = torch.randn(3, 7, 5, dtype=torch.float64, requires_grad=True)
    s0 = LSTMState(*(torch.randn(3, 6, dtype=torch.float64, requires_grad=True) for _ in range(2)))
    fast, fast_node = window_outputs_and_gradients(cell, x, s0, kernel=True)
    ref, ref_node = window_outputs_and_gradients(cell, x, s0, kernel=False)
    assert "MogrifierWindow" in fast_node and "MogrifierWindow" not in ref_node
    for a, b in zip(fast, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_window_function_without_gradients(monkeypatch):
    """Sampling's short windows keep the step loop; long windows without gradients (inference,
    evaluation) run the Function, which is faster there; the outputs agree."""
    cell = _cell(rounds=3, rank=2)
    x = torch.randn(2, 4, 5, dtype=torch.float64)
    assert_kernel_without_gradients(
        cell,
        x,
        monkeypatch,
        node="MogrifierWindow",
        target="lstmlab.kernels.mogrifier.mogrifier_window",
    )


# Each factor's std over s = (fan_in k)^(-1/4), and the cut in the same unit.
_FACTOR_INIT = {"lamb": (0.8796, 2.0), "unit_product": (1.0, 2.0 / 0.8796)}


@pytest.mark.parametrize("factor_init", sorted(_FACTOR_INIT))
def test_low_rank_factor_init_statistics(factor_init):
    ratio, cut = _FACTOR_INIT[factor_init]
    torch.manual_seed(0)
    cfg = MogrifierConfig(hidden_dim=200, rounds=2, rank=16, factor_init=factor_init)
    cell = build_layer(cfg, 300)  # Q_1 (300 x 200) reads h: fan_in 200; R_2 reads x: fan_in 300
    for j, fan_in in enumerate((200, 300)):
        s = (fan_in * 16) ** -0.25
        for factor in (cell.mog_left[j].detach(), cell.mog_right[j].detach()):
            assert factor.abs().max() <= cut * s * (1 + 1e-6)  # nothing beyond the truncation
            assert float(factor.std()) == pytest.approx(ratio * s, rel=0.05)
        product = cell.round_weights()[j].detach()
        # lamb: 0.88² ≈ 0.77 of the 1/sqrt(fan_in) its code's comment aims at; unit_product: all of it
        assert float(product.std()) == pytest.approx(ratio**2 / fan_in**0.5, rel=0.05)


def test_factor_init_needs_low_rank_rounds():
    with pytest.raises(ValueError, match="factor_init applies to the low-rank factors"):
        MogrifierConfig(hidden_dim=8, rounds=2, factor_init="lamb")  # full rank
    with pytest.raises(ValueError, match="factor_init"):
        MogrifierConfig(hidden_dim=8, rounds=0, rank=2, factor_init="lamb")
    MogrifierConfig(hidden_dim=8, rounds=2, rank=2, factor_init="lamb")
