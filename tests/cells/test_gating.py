"""xLSTM gating math: the three mLSTM forms agree, sLSTM's stabilised update equals the naive one,
and extreme gate pre-activations stay finite and accurate."""

from __future__ import annotations

import pytest
import torch

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
