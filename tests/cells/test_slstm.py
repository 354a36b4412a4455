"""The sLSTM block: parameter formula, gradcheck, carried state (cell and conv buffer), init,
and the window Function (kernels/slstm.py) against the step loop and finite differences."""

from __future__ import annotations

import pytest
import torch

from lstmlab.cells import build_layer
from lstmlab.cells.configs import SLSTMConfig
from lstmlab.cells.slstm import SLSTMCell, SLSTMState, powerlaw_forget_bias
from lstmlab.errors import ConfigError
from lstmlab.kernels import reference_only
from lstmlab.kernels.slstm import slstm_window

from kernel_support import long_window_steps, path
from support import assert_dropout_only_in_training, check_carried_state, count_calls


def _block(d=16, heads=4, **kw) -> SLSTMCell:
    torch.manual_seed(0)
    return build_layer(SLSTMConfig(hidden_dim=d, num_heads=heads, **kw), d)


def test_parameter_count_matches_the_reference_formula():
    d, NH, F = 128, 4, 192  # F = round_up(1.3 d, 64)
    expected = 8 * d * d // NH + 4 * d + 5 * d + 3 * d + 3 * F * d
    assert expected == 108_032
    assert sum(p.numel() for p in _block(d, NH).parameters()) == expected


def test_powerlaw_forget_bias():
    first = powerlaw_forget_bias(8, 0, 4)
    assert first[0] == pytest.approx(5.0) and first[-1] == pytest.approx(-7.0)
    assert (first[1:] < first[:-1]).all()
    # deeper blocks keep more long-memory units (larger exponent flattens the start)
    assert (powerlaw_forget_bias(8, 3, 4)[1:-1] > first[1:-1]).all()


def test_init_follows_the_paper():
    block = _block()
    assert block.recurrent_weight.abs().sum() == 0
    torch.testing.assert_close(block.bias[1, 0], powerlaw_forget_bias(4))
    assert block.bias[[0, 2, 3]].abs().sum() == 0


@pytest.mark.parametrize("forget_gate", ["sigmoid", "exponential"])
def test_two_windows_equal_one_long_window_and_steps_match(forget_gate):
    block = _block(forget_gate=forget_gate).double().eval()
    with torch.no_grad():  # R = 0 at init would hide a wrong recurrence
        block.recurrent_weight.normal_(0, 0.3)
    x = torch.randn(2, 11, 16, dtype=torch.float64)
    s_full = check_carried_state(block, x, split=4)
    torch.testing.assert_close(s_full.conv, block.norm(x)[:, -3:])  # last K − 1 inputs y


def test_heads_do_not_mix():
    block = _block(d=8, heads=2).double().eval()
    with torch.no_grad():
        block.recurrent_weight.normal_(0, 0.5)
    x = torch.randn(1, 5, 8, dtype=torch.float64)
    s0 = block.initial_state(1, dtype=torch.float64)
    _, (h, *_rest) = block(x, s0)
    with torch.no_grad():  # cut head 1's input maps: only head 1's units may change
        block.input_weight[:, 1].zero_()
    _, (h2, *_rest) = block(x, s0)
    torch.testing.assert_close(h[:, :4], h2[:, :4])
    assert not torch.allclose(h[:, 4:], h2[:, 4:])


def test_gradcheck_in_float64():
    block = _block(d=8, heads=2).double()
    with torch.no_grad():
        block.recurrent_weight.normal_(0, 0.3)
    x = torch.randn(1, 4, 8, dtype=torch.float64, requires_grad=True)
    s0 = block.initial_state(1, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: block(x, s0)[0], (x,), fast_mode=True)


def test_weight_dropout_masks_the_recurrent_maps_in_training_only():
    torch.manual_seed(0)
    block = build_layer(SLSTMConfig(hidden_dim=16), 16, weight_dropout=0.5)
    with torch.no_grad():
        block.recurrent_weight.normal_(0, 0.3)
    x = torch.randn(2, 6, 16)
    s0 = block.initial_state(2)
    assert_dropout_only_in_training(block, x, s0)


def test_heads_must_divide_the_width():
    with pytest.raises(ConfigError, match="num_heads"):
        build_layer(SLSTMConfig(hidden_dim=10, num_heads=4), 10)


def _state(batch, d, *, zero, dtype=torch.float64):
    """A carried state (n ≥ 1 as after any step) or the zero state, every tensor a leaf."""
    if zero:
        s = [torch.zeros(batch, d, dtype=dtype) for _ in range(4)]
    else:
        s = [torch.randn(batch, d, dtype=dtype) for _ in range(4)]
        s[2] = 1.0 + torch.rand(batch, d, dtype=dtype)  # n
    conv = torch.randn(batch, 3, d, dtype=dtype)
    return SLSTMState(*(t.requires_grad_() for t in (*s, conv)))


def _outputs_and_gradients(block, x, s0, *, kernel, seed=1):
    """Outputs, final state and the gradients w.r.t. x, the state and every parameter of a loss
    that weighs every output differently and also reads the final c, n, m (not gauge invariant)."""
    torch.manual_seed(seed)  # the same DropConnect and dropout masks for both paths
    with path(kernel):
        y, s = block(x, s0)
    ramp = torch.linspace(-1.0, 1.0, y.numel(), dtype=y.dtype).view_as(y)
    loss = (y * ramp).sum() + (0.3 * s.h).sum() + (s.c**2).sum() - (0.2 * s.n).sum()
    loss = loss + (0.1 * s.m**2).sum()
    grads = torch.autograd.grad(loss, [x, *s0, *block.parameters()])
    return (y, *s, *grads), s.c.grad_fn.name()


@pytest.mark.parametrize("zero_state", [False, True], ids=["carried", "zero"])
@pytest.mark.parametrize("forget_gate", ["sigmoid", "exponential"])
def test_window_function_matches_the_step_loop(forget_gate, zero_state):
    """Parity of the fast path: outputs, final state and every gradient equal autograd through
    the step loop (float64), with DropConnect and dropout on in training mode."""
    torch.manual_seed(0)
    config = SLSTMConfig(hidden_dim=8, num_heads=2, forget_gate=forget_gate, dropout=0.1)
    block = build_layer(config, 6, weight_dropout=0.3).double().train()
    with torch.no_grad():  # R = 0 at init would hide a wrong recurrence
        block.recurrent_weight.normal_(0, 0.5)
    x = torch.randn(3, 7, 6, dtype=torch.float64, requires_grad=True)
    s0 = _state(3, 8, zero=zero_state)
    fast, fast_node = _outputs_and_gradients(block, x, s0, kernel=True)
    ref, ref_node = _outputs_and_gradients(block, x, s0, kernel=False)
    assert "SLSTMWindow" in fast_node and "SLSTMWindow" not in ref_node
    for a, b in zip(fast, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("zero_state", [False, True], ids=["carried", "zero"])
@pytest.mark.parametrize("forget_gate", ["sigmoid", "exponential"])
def test_window_function_gradcheck_float64(forget_gate, zero_state):
    """The hand-written backward against finite differences (fast mode: a random projection
    of the Jacobian, every output weighed, final c, n, m included; the parity test below
    checks every entry against autograd). From a zero state n_0 = 0 selects m' = ĩ, a branch
    that a perturbed n_0 would leave, so n_0 is then held fixed."""
    torch.manual_seed(0)
    B, T, NH, hd = 2, 4, 2, 3
    wx = torch.randn(B, T, 4, NH, hd, dtype=torch.float64, requires_grad=True)
    h0, c0, n0, m0, _ = _state(B, NH * hd, zero=zero_state)
    if zero_state:
        n0 = n0.detach()
    recurrent = (0.5 * torch.randn(NH, hd, 4 * hd, dtype=torch.float64)).requires_grad_()

    def fn(wx, h0, c0, n0, m0, recurrent):
        return slstm_window(wx, h0, c0, n0, m0, recurrent, forget_gate=forget_gate)

    assert torch.autograd.gradcheck(fn, (wx, h0, c0, n0, m0, recurrent), fast_mode=True)


@pytest.mark.parametrize("case", ["no_grad", "autocast", "switched_off"])
def test_window_function_is_skipped_without_gradients(case, monkeypatch):
    """Inference and sampling keep the step loop (no buffers to fill for a backward), and so
    do autocast's mixed dtypes and `reference_only()`."""
    block = _block(d=8, heads=2).train()
    x = torch.randn(2, 4, 8)
    expected, _ = block(x, block.initial_state(2))

    def fail(*args, **kwargs):
        raise AssertionError("the window Function ran")

    monkeypatch.setattr("lstmlab.kernels.slstm.slstm_window", fail)
    if case == "no_grad":
        with torch.no_grad():
            y, _ = block(x, block.initial_state(2))
        torch.testing.assert_close(y, expected.detach())
    elif case == "autocast":
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y, _ = block(x, block.initial_state(2))
        y.float().sum().backward()
    else:
        with reference_only():
            y, _ = block(x, block.initial_state(2))
        torch.testing.assert_close(y, expected)


def test_long_windows_without_gradients_keep_the_loop(monkeypatch):
    """sLSTM's Function has no packed products, so inference over long windows keeps the step
    loop (no per-window buffers for a backward that never runs)."""
    block = _block(d=8, heads=2).eval()
    x = torch.randn(2, long_window_steps(2), 8)
    calls = count_calls(monkeypatch, "lstmlab.kernels.slstm.slstm_window")
    with torch.no_grad():
        block(x, block.initial_state(2))
    assert not calls
