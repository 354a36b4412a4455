"""Stabilised exponential gating of xLSTM (Beck et al. 2024, arXiv:2405.04517), as pure functions.

sLSTM pointwise update, per unit, from pre-activations (ĩ, f̃, z̃, õ) and state (c, n, m):

    log i = ĩ;  log f = log σ(f̃) (sigmoid forget gate) or f̃ (exponential forget gate)
    m' = max(log f + m, ĩ)   (m' = ĩ on the first step, marked by n == 0)
    i' = exp(ĩ − m'),  f' = exp(log f + m − m')          both ≤ 1, one of them = 1
    c' = f' c + i' tanh(z̃),  n' = f' n + i',  h' = σ(õ) c' / n'

m cancels in c'/n', so this is exactly the unstabilised c = f c + i z, n = f n + i.

mLSTM matrix memory, per head, with k̂ = k / √DH and state (C, n, m) where the true
memory is e^m C and e^m n:

    C_t = f_t C_{t−1} + i_t k̂_t v_tᵀ,   n_t = f_t n_{t−1} + i_t k̂_t
    h_t = q_tᵀ C_t / (max(|q_t · n_t|, e^{−m_t}) + ε)

C is stored as k vᵀ (DH_k × DH_v), the transpose of the paper's v kᵀ, so that
h = q C is one batched vector-matrix product. Three forms compute the same h and
final state: `mlstm_recurrent` (step by step; sampling, where each step writes the
new C once and never touches the carried one), `mlstm_parallel` (the
T×T decay matrix L_tj = F_t − F_j + ĩ_j with F the cumulative log forget gate,
stabilised per row by μ_t = max(F_t + m_0, max_j L_tj); memory O(T²)) and
`mlstm_chunkwise` (the parallel form inside chunks of L steps, the state
recurrence across chunks; training). All compute in float32 or wider whatever
the input dtype, return h in the input dtype and the state in the compute dtype.

Shapes: B batch, NH heads, T window, DH head dim, NC chunks, L chunk length, d units.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

EPS = 1e-6
# exp(−m) overflows float32 for m < −88; clamping keeps the floor (and its gradient) finite.
M_FLOOR = -80.0


# ---------------------------------------------------------------- sLSTM


def slstm_pointwise(
    i_pre: Tensor,
    f_pre: Tensor,
    z_pre: Tensor,
    o_pre: Tensor,
    c: Tensor,
    n: Tensor,
    m: Tensor,
    *,
    forget_gate: str = "sigmoid",
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """One stabilised sLSTM step, elementwise over (B, d): -> (h', c', n', m')."""
    log_f = F.logsigmoid(f_pre) if forget_gate == "sigmoid" else f_pre
    # From a zero state the carried m is meaningless: start the stabiliser at ĩ so n' = 1.
    m_new = torch.where(n == 0, i_pre, torch.maximum(log_f + m, i_pre))
    i_s = torch.exp(i_pre - m_new)
    f_s = torch.exp(log_f + m - m_new)
    c_new = f_s * c + i_s * torch.tanh(z_pre)
    n_new = f_s * n + i_s  # ≥ 1 after the first step, so the division is safe
    h_new = torch.sigmoid(o_pre) * c_new / n_new
    return h_new, c_new, n_new, m_new


# ---------------------------------------------------------------- mLSTM


class MatrixMemory(NamedTuple):
    C: Tensor  # (B, NH, DH, DH) stabilised memory, stored as k vᵀ
    n: Tensor  # (B, NH, DH) stabilised normaliser
    m: Tensor  # (B, NH) log-space stabiliser


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for half types, else the dtype itself (float64 stays float64)."""
    return torch.promote_types(dtype, torch.float32)


def zero_memory(batch: int, heads: int, head_dim: int, *, device=None, dtype=None) -> MatrixMemory:
    dtype = compute_dtype(dtype or torch.float32)
    return MatrixMemory(
        torch.zeros(batch, heads, head_dim, head_dim, device=device, dtype=dtype),
        torch.zeros(batch, heads, head_dim, device=device, dtype=dtype),
        torch.zeros(batch, heads, device=device, dtype=dtype),
    )


def _floor(m: Tensor) -> Tensor:
    """e^{−m}: the lower bound of the normaliser in the stabilised scale."""
    return torch.exp(-m.clamp(min=M_FLOOR))


def _prepare(q, k, v, i_pre, f_pre, state):
    """Cast to the compute dtype, scale k, take log σ(f̃); zero state when none is carried."""
    dt = compute_dtype(q.dtype)
    B, NH, _, DH = q.shape
    if state is None:
        state = zero_memory(B, NH, DH, device=q.device, dtype=dt)
    k = k.to(dt) / math.sqrt(DH)
    log_f = F.logsigmoid(f_pre.to(dt))
    return q.to(dt), k, v.to(dt), i_pre.to(dt), log_f, MatrixMemory(*(s.to(dt) for s in state))


def mlstm_step(
    q: Tensor, k: Tensor, v: Tensor, i_pre: Tensor, f_pre: Tensor, state: MatrixMemory
) -> tuple[Tensor, MatrixMemory]:
    """One recurrent step: q, k, v (B, NH, DH); i_pre, f_pre (B, NH) -> h (B, NH, DH)."""
    out_dtype = q.dtype
    q, k, v, i_pre, log_f, state = _prepare(
        *(x.unsqueeze(2) for x in (q, k, v)), i_pre.unsqueeze(2), f_pre.unsqueeze(2), state
    )  # each gains a T = 1 axis, which _step drops again
    h, state = _step(*(x.squeeze(2) for x in (q, k, v, i_pre, log_f)), state)
    return h.to(out_dtype), state  # (B, NH, DH)


def mlstm_recurrent(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    i_pre: Tensor,
    f_pre: Tensor,
    state: MatrixMemory | None = None,
) -> tuple[Tensor, MatrixMemory]:
    """Step-by-step form: q, k, v (B, NH, T, DH); i_pre, f_pre (B, NH, T) -> h (B, NH, T, DH)."""
    out_dtype = q.dtype
    q, k, v, i_pre, log_f, state = _prepare(q, k, v, i_pre, f_pre, state)
    outs = []
    for step_inputs in zip(*(x.unbind(2) for x in (q, k, v, i_pre, log_f))):  # one backward
        h_t, state = _step(*step_inputs, state)
        outs.append(h_t)
    h = torch.stack(outs, dim=2)  # (B, NH, T, DH)
    return h.to(out_dtype), state


def _step(q_t, k_t, v_t, i_t, log_f_t, state: MatrixMemory) -> tuple[Tensor, MatrixMemory]:
    """One step in the compute dtype with k already scaled: (B, NH, DH) and (B, NH) -> h (B, NH, DH)."""
    C, n, m = state
    m_new = torch.maximum(log_f_t + m, i_t)  # (B, NH)
    f_s = torch.exp(log_f_t + m - m_new)
    ik = torch.exp(i_t - m_new).unsqueeze(-1) * k_t  # (B, NH, DH) i_s k̂
    C, num = _update_and_read(C, f_s, ik, v_t, q_t)
    n = torch.addcmul(ik, f_s.unsqueeze(-1), n)  # f_s n + i_s k̂
    den = (q_t * n).sum(-1).abs()
    h = num / (torch.maximum(den, _floor(m_new)) + EPS).unsqueeze(-1)
    return h, MatrixMemory(C, n, m_new)


# Bytes of C one group of `_update_and_read` works on: written, then read back while still
# in cache, so C makes one trip through main memory instead of two. Small enough to stay
# in a core's share of cache, large enough that the per-group overhead does not show
# (the plateau depends on the CPU's caches: re-time sampling when moving to another).
CACHE_PASS_BYTES = 2**21


def _update_and_read(
    C: Tensor, f_s: Tensor, ik: Tensor, v: Tensor, q: Tensor
) -> tuple[Tensor, Tensor]:
    """C' = f_s C + (i_s k̂) vᵀ into a fresh tensor (the carried C is left as it was) and q C'.

    C (B, NH, DH, DH); f_s (B, NH); ik, v, q (B, NH, DH) -> C' (B, NH, DH, DH), q C' (B, NH, DH).
    C' is written once, as f_s C and then a rank-1 addcmul_ in place, never as separate
    (DH × DH) temporaries: at sampling sizes C is tens of MiB and the step is bound by
    the bytes of C moved. Without autograd on CPU the heads run in cache-sized groups,
    so that the addcmul_ and the read q C' find C' still in cache.
    """
    if C.device.type != "cpu" or (
        torch.is_grad_enabled() and any(t.requires_grad for t in (C, f_s, ik, v, q))
    ):
        C_new = torch.mul(C, f_s[..., None, None]).addcmul_(ik.unsqueeze(-1), v.unsqueeze(-2))
        return C_new, (q.unsqueeze(-2) @ C_new).squeeze(-2)  # (B, NH, 1, DH) -> (B, NH, DH)
    C_new = torch.empty(C.shape, dtype=C.dtype, device=C.device)
    num = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    # (B, NH, …) -> (B·NH, …) shaped for bmm: views, except for a non-contiguous carried C
    heads = (
        C.flatten(0, 1),
        C_new.flatten(0, 1),
        f_s.flatten()[:, None, None],  # (B·NH, 1, 1)
        ik.flatten(0, 1).unsqueeze(-1),  # (B·NH, DH, 1)
        v.flatten(0, 1).unsqueeze(-2),  # (B·NH, 1, DH)
        q.flatten(0, 1).unsqueeze(-2),  # (B·NH, 1, DH)
        num.flatten(0, 1).unsqueeze(-2),  # (B·NH, 1, DH)
    )
    group = max(1, CACHE_PASS_BYTES // (C.shape[-2] * C.shape[-1] * C.element_size()))
    for c, c_new, f, a, v_g, q_g, out in zip(*(t.split(group) for t in heads)):
        torch.mul(c, f, out=c_new)
        c_new.addcmul_(a, v_g)
        torch.bmm(q_g, c_new, out=out)
    return C_new, num


def _window_outputs(q, k, v, i_pre, log_f, C0, n0, m0) -> Tensor:
    """Parallel form over the last-but-one axis with a carried state; any leading dims (…).

    q, k, v (…, T, DH); i_pre, log_f (…, T); C0 (…, DH, DH); n0 (…, DH); m0 (…) -> h (…, T, DH).
    """
    T = q.shape[-2]
    # F_t − F_j cancels large sums: form it in float64, then return to the compute dtype
    cum64 = log_f.double().cumsum(-1)  # (…, T)
    cum = cum64.to(q.dtype)  # (…, T) F_t
    causal = torch.ones(T, T, dtype=torch.bool, device=q.device).tril()
    decay = (cum64.unsqueeze(-1) - cum64.unsqueeze(-2)).to(q.dtype)  # (…, T, T) F_t − F_j
    log_d = decay + i_pre.unsqueeze(-2)  # (…, T, T) L_tj
    log_d = log_d.masked_fill(~causal, float("-inf"))
    log_a = cum + m0.unsqueeze(-1)  # (…, T) weight of the carried state
    mu = torch.maximum(log_a, log_d.amax(-1))  # (…, T) row stabiliser = the recurrent m_t
    scores = (q @ k.transpose(-1, -2)) * torch.exp(log_d - mu.unsqueeze(-1))  # (…, T, T)
    carry = torch.exp(log_a - mu)  # (…, T)
    den = carry * (q @ n0.unsqueeze(-1)).squeeze(-1) + scores.sum(-1)  # (…, T)
    scale = 1.0 / (torch.maximum(den.abs(), _floor(mu)) + EPS)  # (…, T)
    # h = (carry q C0 + scores v) / den with the division moved onto the (T × T) scores and
    # the (…, T) carry: the (T × DH) products are combined in one pass, not scaled twice
    return torch.addcmul(
        (scores * scale.unsqueeze(-1)) @ v, q @ C0, (carry * scale).unsqueeze(-1)
    )  # (…, T, DH)


def _window_summary(k, v, i_pre, log_f) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """What a window adds to the state, in its own scale: (total log decay g, dC, dn, m_local).

    k, v (…, T, DH); i_pre, log_f (…, T) -> g (…), dC (…, DH, DH), dn (…, DH), m_local (…).
    """
    cum = log_f.double().cumsum(-1)  # (…, T) in float64, as in _window_outputs
    g = cum[..., -1]
    log_w = (g.unsqueeze(-1) - cum).to(k.dtype) + i_pre  # (…, T) log weight of input j at the end
    g = g.to(k.dtype)
    m_local = log_w.amax(-1)
    kw = k * torch.exp(log_w - m_local.unsqueeze(-1)).unsqueeze(-1)  # (…, T, DH)
    return g, kw.transpose(-1, -2) @ v, kw.sum(-2), m_local


def _advance(state: MatrixMemory, g, dC, dn, m_local) -> MatrixMemory:
    """State after a window: decay the carried memory by e^g and add the window's part, restabilised."""
    C, n, m = state
    m_new = torch.maximum(g + m, m_local)
    a = torch.exp(g + m - m_new)
    b = torch.exp(m_local - m_new)
    # addcmul: the (DH × DH) sum is written once, not as two scaled temporaries and their sum
    return MatrixMemory(
        torch.addcmul(b[..., None, None] * dC, a[..., None, None], C),
        torch.addcmul(b[..., None] * dn, a[..., None], n),
        m_new,
    )


def mlstm_parallel(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    i_pre: Tensor,
    f_pre: Tensor,
    state: MatrixMemory | None = None,
) -> tuple[Tensor, MatrixMemory]:
    """Parallel (T×T) form: q, k, v (B, NH, T, DH); i_pre, f_pre (B, NH, T) -> h (B, NH, T, DH)."""
    out_dtype = q.dtype
    q, k, v, i_pre, log_f, state = _prepare(q, k, v, i_pre, f_pre, state)
    h = _window_outputs(q, k, v, i_pre, log_f, *state)
    return h.to(out_dtype), _advance(state, *_window_summary(k, v, i_pre, log_f))


def mlstm_chunkwise(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    i_pre: Tensor,
    f_pre: Tensor,
    state: MatrixMemory | None = None,
    *,
    chunk_size: int = 64,
) -> tuple[Tensor, MatrixMemory]:
    """Chunkwise form: the parallel form inside each chunk of `chunk_size` steps, with the
    state each chunk starts from found by the recurrence over chunk summaries. A ragged
    tail runs the parallel form from the state of the last full chunk. Shapes as `mlstm_parallel`.
    """
    out_dtype = q.dtype
    q, k, v, i_pre, log_f, state = _prepare(q, k, v, i_pre, f_pre, state)
    B, NH, T, DH = q.shape
    L = chunk_size
    NC = T // L
    outs = []
    if NC:
        full = NC * L

        def chunks(x: Tensor) -> Tensor:
            return x[:, :, :full].unflatten(2, (NC, L))  # (B, NH, T, …) -> (B, NH, NC, L, …)

        qc, kc, vc, ic, fc = map(chunks, (q, k, v, i_pre, log_f))
        g, dC, dn, m_local = _window_summary(kc, vc, ic, fc)  # each with an NC axis at dim 2
        starts = []
        # only (DH × DH) state updates run sequentially; unbind, not [:, :, c], so that the
        # backward does not write an all-chunks-sized zero tensor per chunk (O(NC²) traffic)
        for summary in zip(*(x.unbind(2) for x in (g, dC, dn, m_local))):
            starts.append(state)
            state = _advance(state, *summary)
        # one chunk (the reference training window) starts from the carried state itself:
        # a view, not a copy of the (B, NH, DH, DH) memory
        C0, n0, m0 = (
            s[0].unsqueeze(2) if NC == 1 else torch.stack(s, dim=2) for s in zip(*starts)
        )  # (B, NH, NC, …)
        h = _window_outputs(qc, kc, vc, ic, fc, C0, n0, m0)  # (B, NH, NC, L, DH)
        outs.append(h.flatten(2, 3))  # (B, NH, NC·L, DH)
        q, k, v, i_pre, log_f = (x[:, :, full:] for x in (q, k, v, i_pre, log_f))
    if q.shape[2]:
        outs.append(_window_outputs(q, k, v, i_pre, log_f, *state))
        state = _advance(state, *_window_summary(k, v, i_pre, log_f))
    h = outs[0] if len(outs) == 1 else torch.cat(outs, dim=2)  # (B, NH, T, DH), no lone-part copy
    return h.to(out_dtype), state


MLSTM_FORMS = {
    "recurrent": mlstm_recurrent,
    "parallel": mlstm_parallel,
    "chunkwise": mlstm_chunkwise,
}
