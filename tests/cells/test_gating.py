"""xLSTM gating math: the three mLSTM forms agree, sLSTM's stabilised update equals the naive one,
and extreme gate pre-activations stay finite and accurate."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import lstmlab.cells.gating as gating
from lstmlab.cells.gating import (
    MatrixMemory,
    mlstm_chunkwise,
    mlstm_parallel,
    mlstm_recurrent,
    mlstm_step,
    slstm_pointwise,
    zero_memory,
)

B, NH, DH = 2, 3, 4


def _inputs(T, dtype=torch.float64, gate_scale=3.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(B, NH, T, DH, generator=g, dtype=dtype) for _ in range(3))
    i_pre = gate_scale * torch.randn(B, NH, T, generator=g, dtype=dtype)
    f_pre = gate_scale * torch.randn(B, NH, T, generator=g, dtype=dtype)
    return q, k, v, i_pre, f_pre


def _carried(dtype=torch.float64, seed=1):
    """A state reached by running real inputs, so C, n and m are mutually consistent."""
    return mlstm_recurrent(*_inputs(5, dtype, seed=seed))[1]


def _naive_mlstm(q, k, v, i_pre, f_pre):
    """Unstabilised float64 reference straight from the paper's equations (C stored as k vᵀ)."""
    C = torch.zeros(B, NH, DH, DH, dtype=torch.float64)
    n = torch.zeros(B, NH, DH, dtype=torch.float64)
    out = []
    for t in range(q.shape[2]):
        i, f = torch.exp(i_pre[..., t]), torch.sigmoid(f_pre[..., t])
        k_t = k[:, :, t] / DH**0.5
        C = f[..., None, None] * C + i[..., None, None] * k_t[..., :, None] * v[:, :, t, None, :]
        n = f[..., None] * n + i[..., None] * k_t
        num = torch.einsum("bhd,bhde->bhe", q[:, :, t], C)
        den = (q[:, :, t] * n).sum(-1).abs().clamp(min=1.0)
        out.append(num / den[..., None])
    return torch.stack(out, 2)


def test_recurrent_form_equals_the_unstabilised_equations():
    q, k, v, i_pre, f_pre = _inputs(9, gate_scale=1.0)
    h, _ = mlstm_recurrent(q, k, v, i_pre, f_pre)
    # ε = 1e-6 in the stabilised denominator is the only difference
    torch.testing.assert_close(h, _naive_mlstm(q, k, v, i_pre, f_pre), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("carried", [False, True], ids=["zero-state", "carried-state"])
@pytest.mark.parametrize("T,chunk", [(16, 4), (23, 5), (7, 64), (12, 1)])
def test_three_forms_agree_in_float64(carried, T, chunk):
    args = _inputs(T)
    state = _carried() if carried else None
    h_r, s_r = mlstm_recurrent(*args, state)
    for h, s in (mlstm_parallel(*args, state), mlstm_chunkwise(*args, state, chunk_size=chunk)):
        torch.testing.assert_close(h, h_r, rtol=1e-10, atol=1e-12)
        for a, b in zip(s, s_r):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("carried", [False, True], ids=["zero-state", "carried-state"])
def test_three_forms_agree_in_float32_forward_and_backward(carried):
    base = _inputs(40, torch.float32)
    state = _carried(torch.float32) if carried else None
    results = []
    for form in (
        mlstm_recurrent,
        mlstm_parallel,
        lambda *a: mlstm_chunkwise(*a, chunk_size=16),
    ):
        args = [t.clone().requires_grad_() for t in base]
        st = MatrixMemory(*(s.clone().requires_grad_() for s in state)) if state else None
        h, s = form(*args, st)
        (h.square().sum() + s.C.sum() + s.n.sum()).backward()
        grads = [a.grad for a in args] + ([t.grad for t in st] if st else [])
        results.append((h.detach(), [t.detach() for t in s], grads))
    ref_h, ref_s, ref_g = results[0]
    for h, s, g in results[1:]:
        torch.testing.assert_close(h, ref_h, rtol=1e-5, atol=1e-5)
        for a, b in zip(s, ref_s):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
        # backward sums many more float32 terms: agree relative to the gradient's size
        for a, b in zip(g, ref_g):
            assert (a - b).norm() <= 1e-4 * b.norm()


def test_gradcheck_of_the_forms_in_float64():
    args = [t[:1, :1].requires_grad_() for t in _inputs(6)]
    for form in (mlstm_parallel, lambda *a: mlstm_chunkwise(*a, chunk_size=4)):
        assert torch.autograd.gradcheck(lambda *a, f=form: f(*a)[0], args, fast_mode=True)


def test_two_windows_equal_one_and_steps_equal_the_window():
    q, k, v, i_pre, f_pre = _inputs(20)
    full, s_full = mlstm_chunkwise(q, k, v, i_pre, f_pre, chunk_size=4)
    first, s = mlstm_chunkwise(
        q[:, :, :9], k[:, :, :9], v[:, :, :9], i_pre[..., :9], f_pre[..., :9], chunk_size=4
    )
    second, s = mlstm_chunkwise(
        q[:, :, 9:], k[:, :, 9:], v[:, :, 9:], i_pre[..., 9:], f_pre[..., 9:], s, chunk_size=4
    )
    torch.testing.assert_close(torch.cat([first, second], 2), full)
    s_step, outs = zero_memory(B, NH, DH, dtype=torch.float64), []
    for t in range(20):
        h, s_step = mlstm_step(
            q[:, :, t], k[:, :, t], v[:, :, t], i_pre[..., t], f_pre[..., t], s_step
        )
        outs.append(h)
    torch.testing.assert_close(torch.stack(outs, 2), full)
    for a, b in zip(s_step, s_full):
        torch.testing.assert_close(a, b)


def _previous_step(q, k, v, i_pre, f_pre, state):
    """The step as written before the single-write update: separate (DH × DH) temporaries."""
    C, n, m = state
    k = k / DH**0.5
    log_f = F.logsigmoid(f_pre)
    m_new = torch.maximum(log_f + m, i_pre)
    f_s, i_s = torch.exp(log_f + m - m_new), torch.exp(i_pre - m_new)
    C = f_s[..., None, None] * C + i_s[..., None, None] * (k.unsqueeze(-1) * v.unsqueeze(-2))
    n = f_s[..., None] * n + i_s[..., None] * k
    num = (q.unsqueeze(-2) @ C).squeeze(-2)
    den = torch.maximum((q * n).sum(-1).abs(), torch.exp(-m_new.clamp(min=gating.M_FLOOR)))
    return num / (den + gating.EPS)[..., None], MatrixMemory(C, n, m_new)


def _steps(step, args, state):
    """Run `step` over the T axis of (q, k, v, i_pre, f_pre): -> h (B, NH, T, DH), final state."""
    outs = []
    for t in range(args[0].shape[2]):
        h, state = step(*(x[:, :, t] for x in args), state)
        outs.append(h)
    return torch.stack(outs, 2), state


@pytest.fixture
def small_groups(monkeypatch):
    """Cache-sized passes of a few heads over B·NH = 6: 2 + 2 + 2 in float64, 5 + 1 in float32."""
    monkeypatch.setattr(gating, "CACHE_PASS_BYTES", 5 * DH * DH * 4)


@pytest.mark.parametrize("gate_scale", [3.0, 60.0])
@pytest.mark.parametrize("carried", [False, True], ids=["zero-state", "carried-state"])
def test_sampling_step_equals_the_previous_formula_and_the_chunkwise_form(
    small_groups, carried, gate_scale
):
    args = _inputs(12, gate_scale=gate_scale)
    state = _carried() if carried else zero_memory(B, NH, DH, dtype=torch.float64)
    before = [t.clone() for t in state]
    with torch.no_grad():
        h, s = _steps(mlstm_step, args, state)
    h_prev, s_prev = _steps(_previous_step, args, state)
    h_chunk, s_chunk = mlstm_chunkwise(*args, state, chunk_size=5)
    for ref_h, ref_s in ((h_prev, s_prev), (h_chunk, s_chunk)):
        torch.testing.assert_close(h, ref_h, rtol=1e-10, atol=1e-12)
        for a, b in zip(s, ref_s):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    for a, b in zip(state, before):  # the carried state is read, never written
        assert torch.equal(a, b)


@pytest.mark.parametrize("pattern", ["uniform", "i-low-f-high", "i-high-f-low"])
def test_float32_sampling_steps_stay_finite_for_extreme_gates(small_groups, pattern):
    q, k, v, _, _ = _inputs(64, torch.float32)
    g = torch.Generator().manual_seed(4)
    if pattern == "uniform":
        i_pre, f_pre = (120 * torch.rand(B, NH, 64, generator=g) - 60 for _ in range(2))
    else:
        sign = -1.0 if pattern == "i-low-f-high" else 1.0
        i_pre, f_pre = torch.full((B, NH, 64), 60 * sign), torch.full((B, NH, 64), -60 * sign)
    args = (q, k, v, i_pre, f_pre)
    with torch.no_grad():
        h, state = _steps(mlstm_step, args, zero_memory(B, NH, DH))
    assert torch.isfinite(h).all() and all(torch.isfinite(t).all() for t in state)
    ref, _ = _steps(
        _previous_step, [t.double() for t in args], zero_memory(B, NH, DH, dtype=torch.float64)
    )
    assert (h.double() - ref).norm() <= 1e-5 * ref.norm()


def test_grouped_sampling_pass_equals_the_autograd_pass(small_groups):
    args = _inputs(6, torch.float32)
    with torch.no_grad():
        h_fast, s_fast = _steps(mlstm_step, args, _carried(torch.float32))
    grad_args = [t.clone().requires_grad_() for t in args]
    h, s = _steps(mlstm_step, grad_args, _carried(torch.float32))
    (h.square().sum() + s.C.sum()).backward()
    assert all(torch.isfinite(a.grad).all() for a in grad_args)
    torch.testing.assert_close(h_fast, h.detach(), rtol=1e-6, atol=1e-7)
    for a, b in zip(s_fast, s):
        torch.testing.assert_close(a, b.detach(), rtol=1e-6, atol=1e-7)


def test_sampling_step_takes_an_empty_batch():
    with torch.no_grad():
        h, s = mlstm_step(*(t[:0, :, 0] for t in _inputs(1)), zero_memory(0, NH, DH))
    assert h.shape == (0, NH, DH) and s.C.shape == (0, NH, DH, DH)


def test_step_gradchecks_from_a_carried_state_in_float64():
    args = [t[:, :, 0].requires_grad_() for t in _inputs(1)]
    C, n, m = _carried()
    C, n = C.requires_grad_(), n.requires_grad_()
    assert torch.autograd.gradcheck(
        lambda *a: mlstm_step(*a[:5], MatrixMemory(a[5], a[6], m))[0], (*args, C, n), fast_mode=True
    )


def test_sampling_step_reads_bf16_inputs_and_a_non_contiguous_state(small_groups):
    args = _inputs(4, torch.float32)
    C, n, m = _carried(torch.float32)
    C_strided = C.transpose(-1, -2).contiguous().transpose(-1, -2)  # same values, other strides
    assert not C_strided.is_contiguous()
    with torch.no_grad():
        h, s = _steps(mlstm_step, [t.bfloat16() for t in args], MatrixMemory(C_strided, n, m))
    assert h.dtype == torch.bfloat16 and all(t.dtype == torch.float32 for t in s)
    ref, s_ref = _steps(
        _previous_step,
        [t.bfloat16().double() for t in args],
        MatrixMemory(*(t.double() for t in (C, n, m))),
    )
    assert (h.double() - ref).norm() <= 1e-2 * ref.norm()  # h itself is rounded to bf16
    torch.testing.assert_close(s.C.double(), s_ref.C, rtol=1e-5, atol=1e-6)


# bf16: the output itself is rounded to 8 bits (relative 2^-9); the maths runs in float32
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-4), (torch.bfloat16, 1e-2)])
@pytest.mark.parametrize("pattern", ["uniform", "i-low-f-high", "i-high-f-low"])
def test_extreme_gates_stay_finite_and_match_float64(dtype, tol, pattern):
    T = 4096
    g = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(1, 2, T, 8, generator=g) for _ in range(3))
    if pattern == "uniform":
        i_pre, f_pre = (120 * torch.rand(1, 2, T, generator=g) - 60 for _ in range(2))
    else:
        sign = -1.0 if pattern == "i-low-f-high" else 1.0
        i_pre, f_pre = torch.full((1, 2, T), 60 * sign), torch.full((1, 2, T), -60 * sign)
    low = [t.to(dtype) for t in (q, k, v, i_pre, f_pre)]
    args = [t.requires_grad_() for t in low]
    h, state = mlstm_chunkwise(*args, chunk_size=64)
    h.float().sum().backward()
    assert torch.isfinite(h).all() and all(torch.isfinite(s).all() for s in state)
    assert all(torch.isfinite(a.grad).all() for a in args)
    ref, _ = mlstm_chunkwise(*(t.detach().double() for t in low), chunk_size=64)
    assert (h.double() - ref).norm() <= tol * ref.norm()


def _naive_slstm(pre_seq, forget_gate):
    """Unstabilised float64 sLSTM from a zero state: c = f c + i z, n = f n + i, h = o c / n."""
    c = n = torch.zeros_like(pre_seq[0][0])
    hs = []
    for i_pre, f_pre, z_pre, o_pre in pre_seq:
        f = torch.sigmoid(f_pre) if forget_gate == "sigmoid" else torch.exp(f_pre)
        c = f * c + torch.exp(i_pre) * torch.tanh(z_pre)
        n = f * n + torch.exp(i_pre)
        hs.append(torch.sigmoid(o_pre) * c / n)
    return hs


@pytest.mark.parametrize("forget_gate", ["sigmoid", "exponential"])
def test_slstm_update_equals_the_unstabilised_recurrence(forget_gate):
    g = torch.Generator().manual_seed(0)
    pre_seq = [
        tuple(2 * torch.randn(3, 5, generator=g, dtype=torch.float64) for _ in range(4))
        for _ in range(12)
    ]
    h = c = n = m = torch.zeros(3, 5, dtype=torch.float64)
    for (i_pre, f_pre, z_pre, o_pre), h_ref in zip(pre_seq, _naive_slstm(pre_seq, forget_gate)):
        h, c, n, m = slstm_pointwise(i_pre, f_pre, z_pre, o_pre, c, n, m, forget_gate=forget_gate)
        torch.testing.assert_close(h, h_ref)
        assert (n >= 1 - 1e-12).all()  # the stabilised normaliser never drops below 1


def test_slstm_update_is_finite_for_extreme_gates_and_gradchecks():
    big = torch.full((2, 3), 80.0)
    h, c, n, m = slstm_pointwise(big, -big, big, big, *(torch.zeros(2, 3) for _ in range(3)))
    for _ in range(50):
        h, c, n, m = slstm_pointwise(big, big, big, -big, c, n, m)
    assert all(torch.isfinite(t).all() for t in (h, c, n, m))
    # c / n is a weighted average of tanh values, so |h| ≤ 1, and n never drops below 1
    assert (n >= 1).all() and (h.abs() <= 1).all()
    args = [torch.randn(2, 3, dtype=torch.float64, requires_grad=True) for _ in range(4)]
    state = [torch.rand(2, 3, dtype=torch.float64) + 0.5 for _ in range(2)]
    m0 = torch.randn(2, 3, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda *a: slstm_pointwise(*a, *state, m0), args)
