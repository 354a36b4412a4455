"""The `multiplicative` cell against Krause et al.'s equations, finite differences and its formulas."""

from __future__ import annotations

import pytest
import torch

from lstmlab.cells import build_layer
from lstmlab.cells.configs import MultiplicativeConfig
from lstmlab.cells.multiplicative import MultiplicativeState

from kernel_support import assert_kernel_without_gradients, window_outputs_and_gradients
from support import assert_dropout_only_in_training, gradcheck_cell


def _cell(input_dim=5, hidden=6, dtype=torch.float64, seed=0, **cfg):
    torch.manual_seed(seed)
    cell = build_layer(MultiplicativeConfig(hidden_dim=hidden, **cfg), input_dim).to(dtype)
    if cfg.get("weight_norm"):
        with torch.no_grad():  # gains away from the row norms, so the normalisation matters
            for name in ("mx", "hx", "mh", "hm"):
                getattr(cell, f"gain_{name}").uniform_(0.5, 1.5)
    return cell.eval()


def _effective(cell, name):
    w = getattr(cell, f"weight_{name}").detach()
    if cell.config.weight_norm:
        g = getattr(cell, f"gain_{name}").detach()
        w = torch.stack([g[k] * w[k] / torch.sqrt((w[k] ** 2).sum()) for k in range(w.shape[0])])
    return w


def _naive(cell, x, h, c):
    """One step at a time from the paper's equations, the candidate called a, order i, f, a, o."""
    d = cell.hidden_dim
    w_mx, w_mh, w_hx, w_hm = (_effective(cell, n) for n in ("mx", "mh", "hx", "hm"))
    b = cell.bias.detach()
    outs = []
    for t in range(x.shape[1]):
        m = (x[:, t] @ w_mx.T) * (h @ w_mh.T)
        pre = x[:, t] @ w_hx.T + m @ w_hm.T + b
        i, f, a, o = pre[:, :d], pre[:, d : 2 * d], pre[:, 2 * d : 3 * d], pre[:, 3 * d :]
        sig = lambda v: 1 / (1 + torch.exp(-v))  # noqa: E731
        c = sig(f) * c + sig(i) * torch.tanh(a)
        h = sig(o) * torch.tanh(c)
        outs.append(h)
    return torch.stack(outs, 1), h, c


@pytest.mark.parametrize("weight_norm", [False, True])
def test_matches_the_paper_equations(weight_norm):
    cell = _cell(weight_norm=weight_norm)
    x = torch.randn(3, 8, 5, dtype=torch.float64)
    h0, c0 = torch.randn(3, 6, dtype=torch.float64), torch.randn(3, 6, dtype=torch.float64)
    with torch.no_grad():
        y, s = cell(x, MultiplicativeState(h0, c0))
    y_ref, h_ref, c_ref = _naive(cell, x, h0, c0)
    torch.testing.assert_close(y, y_ref)
    torch.testing.assert_close(s.h, h_ref)
    torch.testing.assert_close(s.c, c_ref)


def test_hidden_state_reaches_the_gates_only_through_m():
    cell = _cell()
    x = torch.randn(2, 1, 5, dtype=torch.float64)
    with torch.no_grad():
        cell.weight_mh.zero_()  # m = 0 whatever h is
        y_a, _ = cell(
            x,
            MultiplicativeState(
                torch.randn(2, 6, dtype=torch.float64), torch.zeros(2, 6, dtype=torch.float64)
            ),
        )
        y_b, _ = cell(
            x,
            MultiplicativeState(
                torch.randn(2, 6, dtype=torch.float64), torch.zeros(2, 6, dtype=torch.float64)
            ),
        )
    torch.testing.assert_close(y_a, y_b)


@pytest.mark.parametrize("weight_norm", [False, True])
def test_parameter_count_matches_formula(weight_norm):
    dx, d = 7, 6
    cell = _cell(input_dim=dx, hidden=d, weight_norm=weight_norm)
    expected = 5 * d * dx + 5 * d * d + 4 * d + (10 * d if weight_norm else 0)
    assert sum(p.numel() for p in cell.parameters()) == expected


def test_init_orthogonal_forget_bias_three_and_weight_norm_preserves_function():
    plain = build_layer(MultiplicativeConfig(hidden_dim=6), 6)
    eye = torch.eye(6)
    torch.testing.assert_close(plain.weight_mh @ plain.weight_mh.T, eye, atol=1e-5, rtol=0)
    assert torch.all(plain.bias[6:12] == 3.0) and torch.all(plain.bias[:6] == 0)
    assert torch.all(plain.bias[12:] == 0)
    torch.manual_seed(4)
    a = build_layer(MultiplicativeConfig(hidden_dim=6, weight_norm=False), 6)
    torch.manual_seed(4)
    b = build_layer(MultiplicativeConfig(hidden_dim=6, weight_norm=True), 6)
    x = torch.randn(2, 5, 6)
    torch.testing.assert_close(a(x, a.initial_state(2))[0], b(x, b.initial_state(2))[0])


@pytest.mark.parametrize("weight_norm", [False, True])
def test_gradcheck_float64(weight_norm):
    cell = _cell(input_dim=3, hidden=4, weight_norm=weight_norm)
    # fast_mode: random projections of the Jacobian; the full check takes ~10 s with weight norm
    assert gradcheck_cell(cell, MultiplicativeState, fast_mode=weight_norm)


def test_two_windows_equal_one_and_single_steps_match():
    cell = _cell()
    x = torch.randn(2, 12, 5, dtype=torch.float64)
    s0 = cell.initial_state(2)
    with torch.no_grad():
        y_full, s_full = cell(x, s0)
        y1, s1 = cell(x[:, :7], s0)
        y2, s2 = cell(x[:, 7:], s1)
        torch.testing.assert_close(torch.cat([y1, y2], 1), y_full)
        torch.testing.assert_close(s2.c, s_full.c)
        s = s0
        for t in range(12):  # the sampling step
            y_t, s = cell.step(x[:, t], s)
            torch.testing.assert_close(y_t, y_full[:, t])


def test_state_and_weight_dropout_act_in_training_only():
    torch.manual_seed(0)
    cell = build_layer(MultiplicativeConfig(hidden_dim=6, state_dropout=0.5), 5, weight_dropout=0.5)
    x = torch.randn(2, 6, 5)
    s0 = MultiplicativeState(torch.randn(2, 6), torch.randn(2, 6))
    assert_dropout_only_in_training(cell, x, s0)


@pytest.mark.parametrize("weight_norm", [False, True])
@pytest.mark.parametrize("state_dropout,weight_dropout", [(0.0, 0.0), (0.3, 0.2)])
def test_window_function_matches_the_step_loop(weight_norm, state_dropout, weight_dropout):
    """Parity of the fast path: outputs and every gradient equal autograd through
    `multiplicative_step` (float64), with state dropout and DropConnect on or off."""
    torch.manual_seed(0)
    config = MultiplicativeConfig(
        hidden_dim=6, weight_norm=weight_norm, state_dropout=state_dropout
    )
    cell = build_layer(config, 5, weight_dropout=weight_dropout).double().train()
    with torch.no_grad():
        cell.bias.normal_(0.0, 0.5)
    x = torch.randn(3, 7, 5, dtype=torch.float64, requires_grad=True)
    s0 = MultiplicativeState(
        *(torch.randn(3, 6, dtype=torch.float64, requires_grad=True) for _ in range(2))
    )
    fast, fast_node = window_outputs_and_gradients(cell, x, s0, kernel=True)
    ref, ref_node = window_outputs_and_gradients(cell, x, s0, kernel=False)
    assert "MultiplicativeWindow" in fast_node and "MultiplicativeWindow" not in ref_node
    for a, b in zip(fast, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_window_function_gradcheck_float64():
    """Finite differences through the Function itself, with a state-dropout mask."""
    from lstmlab.kernels.multiplicative import multiplicative_window

    torch.manual_seed(0)
    B, T, H = 2, 4, 3

    def rand(*shape):
        return torch.randn(*shape, dtype=torch.float64, requires_grad=True)

    mask = torch.tensor([[2.0, 0.0, 2.0], [0.0, 2.0, 2.0]], dtype=torch.float64)

    def fn(x, h0, c0, w_in, b_in, w_mh, w_hm):
        return multiplicative_window(x, h0, c0, mask, w_in=w_in, b_in=b_in, w_mh=w_mh, w_hm=w_hm)

    E = 2
    inputs = (rand(B, T, E), rand(B, H), rand(B, H), rand(5 * H, E), rand(5 * H))
    inputs += (rand(H, H), rand(4 * H, H))
    assert torch.autograd.gradcheck(fn, inputs)


def test_window_function_without_gradients(monkeypatch):
    """Sampling's short windows keep the step loop; long windows without gradients (inference,
    evaluation) run the Function, which is faster there; the outputs agree."""
    cell = _cell()
    x = torch.randn(2, 4, 5, dtype=torch.float64)
    assert_kernel_without_gradients(
        cell,
        x,
        monkeypatch,
        node="MultiplicativeWindow",
        target="lstmlab.kernels.multiplicative.multiplicative_window",
    )


@pytest.mark.parametrize("kernel", [True, False])
def test_krause_state_dropout_masks_the_output_with_the_recurrence_mask(kernel):
    from kernel_support import path

    on = _cell(state_dropout=0.5, state_dropout_on_output=True).train()
    off = _cell(state_dropout=0.5).train()  # same weights (same seed), mask on h_{t-1} only
    x = torch.randn(3, 7, 5, dtype=torch.float64, requires_grad=True)  # the Function runs
    s0 = MultiplicativeState(*(torch.randn(3, 6, dtype=torch.float64) for _ in range(2)))
    with path(kernel):
        constants = on.window_constants(s0)
        mask = constants[1]  # (B, H), one per window and stream
        y_on, s_on = on.run_window(x, s0, constants)
        y_off, s_off = off.run_window(x, s0, constants)
        assert ("MultiplicativeWindow" in y_off.grad_fn.name()) == kernel
        # the recurrence is unchanged; the output carries the same mask at every step
        torch.testing.assert_close(y_on, y_off * mask.unsqueeze(1))
        for a, b in zip(s_on, s_off):
            torch.testing.assert_close(a, b)
        assert bool((mask == 0).any()) and bool((y_on == 0).any(dim=1).eq(mask == 0).all())
        # each window draws its own mask
        zeros = [(on(x, s0)[0] == 0).all(dim=1) for _ in range(4)]  # (B, H) units dropped
        assert any(not torch.equal(zeros[0], z) for z in zeros[1:])
        # off in eval: the plain cell's output
        on.eval(), off.eval()
        torch.testing.assert_close(on(x, s0)[0], off(x, s0)[0], rtol=0, atol=0)


def test_krause_variant_needs_a_state_dropout_rate():
    with pytest.raises(ValueError, match="state_dropout_on_output"):
        MultiplicativeConfig(hidden_dim=6, state_dropout_on_output=True)
