"""The sLSTM recurrence of a whole window as one autograd Function with a hand-written backward.

Same maths as the step loop in `SLSTMCell.reference_window` (xLSTM, arXiv:2405.04517;
see cells/slstm.py and `gating.slstm_pointwise`): per step, per head, from the input side
wx_t (already including the bias),

    [ĩ, f̃, z̃, õ] = wx_t + R h_{t−1}
    log f = log σ(f̃) ("sigmoid") or f̃ ("exponential")
    m' = max(log f + m, ĩ)                      m' = ĩ on the first step where n == 0
    i' = exp(ĩ − m'),  f' = exp(log f + m − m')
    c' = f' c + i' tanh(z̃),  n' = f' n + i',  h' = σ(õ) c' / n'

Why a Function: under autograd every step records about twenty small
elementwise nodes and two per-head products for the backward, and the
recurrent weight's gradient is summed from T (hd, B) @ (B, 4hd) products.
Here the forward keeps per-window buffers instead of a graph (every step's
i', f', tanh z̃, σ(õ), with a sigmoid forget gate also f' d log f/df̃, and every
h, c, n); the backward loop only carries dh, dc, dn back through time and
stores each step's pre-activation gradient, which is the gradient of wx; the
gradient of R is then one (hd, T·B) @ (T·B, 4hd) product per head. The
backward forms its coefficients step by step from the stored activations
rather than as window-sized temporaries: on CPU each fresh window-sized tensor
costs its first-touch page faults, more than the few small products it saves.

The stabiliser m is a gauge: scaling c and n by e^{−δ} while adding δ to m
changes no h, now or later. So the loop differentiates with every m held at
its forward value (as the official xLSTM kernels do), which gives the exact
gradient of anything that depends on the outputs h. Only the final c, n, m
are not gauge invariant: a loss on them moves m_T by g = ∂L/∂m_T − c_T ∂L/∂c_T
− n_T ∂L/∂n_T, and g goes back along m's own chain (the branch max picked,
half each on a tie, as torch.maximum) to ĩ, f̃ and m_0. That chain needs no
incoming gradient but g, so it is formed for all steps at once, and only when
g is not zero (training detaches the final state, so it is zero there).

The step loop in `SLSTMCell` stays the reference; the parity tests compare
outputs and every gradient in float64 and gradcheck this Function.

Shapes: B batch, T window, NH heads, hd head size, d = NH·hd. Buffers are
head-major (NH, T, B, ·), so a step's slice is one contiguous (B, ·) matrix per
head and the whole window's rows of a head are one (T·B, ·) matrix; they hold
the dtype of wx.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from lstmlab.kernels.policy import function_applies

GATES = 4  # order i, f, z, o


def _heads(s: Tensor, num_heads: int) -> Tensor:
    """(B, d) -> (NH, B, hd) view."""
    return s.unflatten(-1, (num_heads, -1)).transpose(0, 1)


def _batch_first(s: Tensor) -> Tensor:
    """(NH, B, hd) -> (B, d), a new tensor."""
    return s.transpose(0, 1).flatten(1).clone(memory_format=torch.contiguous_format)


class SLSTMWindow(torch.autograd.Function):
    """(wx (B, T, 4, NH, hd), h0, c0, n0, m0 (B, d), R (NH, hd, 4hd), sigmoid_forget)
    -> (y (B, T, d), h_T, c_T, n_T, m_T)."""

    @staticmethod
    def forward(ctx, wx, h0, c0, n0, m0, recurrent, sigmoid_forget: bool):
        batch, steps, _, heads, head_dim = wx.shape
        new = wx.new_empty
        wx_heads = wx.permute(3, 1, 0, 2, 4)  # (NH, T, B, 4, hd) view, read one step at a time
        # every step's i', f', tanh z̃, σ(õ), and with a sigmoid forget gate f' · d log f/df̃, one
        # (NH, T, B, hd) buffer each: one block of all five would exceed the CPU allocator's mmap
        # limit (32 MiB at the reference size) and take first-touch page faults every window
        acts = tuple(new(heads, steps, batch, head_dim) for _ in range(5 if sigmoid_forget else 4))
        # h, c, n before (index 0) and after every step
        hs, cs, ns = (new(heads, steps + 1, batch, head_dim) for _ in range(3))
        for buf, s0 in zip((hs, cs, ns), (h0, c0, n0)):
            buf[:, 0] = _heads(s0, heads)
        m = _heads(m0, heads).to(wx.dtype)
        pre = new(heads, batch, GATES, head_dim)  # this step's pre-activations
        for t in range(steps):
            torch.bmm(hs[:, t], recurrent, out=pre.view(heads, batch, GATES * head_dim))
            pre.add_(wx_heads[:, t])
            i_pre, f_pre, z_pre, o_pre = pre.unbind(2)  # (NH, B, hd) each
            i_s, f_s, z, o, *f_s_dlog_f = (a[:, t] for a in acts)
            # f_pre becomes log f + m
            if sigmoid_forget:
                torch.sigmoid(f_pre.neg(), out=f_s_dlog_f[0])  # d log σ(f̃) / df̃ = σ(−f̃)
                torch.add(F.logsigmoid(f_pre), m, out=f_pre)
            else:
                f_pre.add_(m)
            m = torch.maximum(f_pre, i_pre)
            if t == 0:  # n ≥ 1 after any step, so only a carried zero state can start afresh
                m = torch.where(ns[:, 0] == 0, i_pre, m)
            torch.sub(i_pre, m, out=i_s).exp_()
            torch.sub(f_pre, m, out=f_s).exp_()
            torch.tanh(z_pre, out=z)
            torch.sigmoid(o_pre, out=o)
            if sigmoid_forget:
                f_s_dlog_f[0].mul_(f_s)
            c = torch.mul(f_s, cs[:, t], out=cs[:, t + 1]).addcmul_(i_s, z)
            n = torch.mul(f_s, ns[:, t], out=ns[:, t + 1]).add_(i_s)
            torch.mul(o, c, out=hs[:, t + 1]).div_(n)
        ctx.save_for_backward(recurrent)
        ctx.buffers = (acts, hs, cs, ns)  # the window's own buffers: nobody else can modify them
        y = hs[:, 1:].permute(2, 1, 0, 3).reshape(batch, steps, heads * head_dim)  # (B, T, d)
        return (y, *(_batch_first(s) for s in (hs[:, steps], cs[:, steps], ns[:, steps], m)))

    @staticmethod
    @once_differentiable
    def backward(ctx, dy, dh_last, dc_last, dn_last, dm_last):
        (recurrent,) = ctx.saved_tensors
        acts, hs, cs, ns = ctx.buffers
        heads, steps, batch, head_dim = acts[0].shape
        i_s, f_s, z, o, *f_s_dlog_f = acts  # (NH, T, B, hd) each
        f_s_dlog_f = f_s_dlog_f[0] if f_s_dlog_f else f_s  # d log f/df̃ = 1 for exp(f̃)
        # m's own chain, only when a loss on the final state moves m_T (see the module docstring)
        g = _heads(dm_last, heads) - cs[:, -1] * _heads(dc_last, heads)
        g -= ns[:, -1] * _heads(dn_last, heads)  # (NH, B, hd)
        extra = None
        if bool(g.ne(0).any()):
            dm0_chain, extra = _stabiliser_chain(g, i_s, f_s, f_s_dlog_f, ns[:, 0] == 0)

        dyh = dy.unflatten(-1, (heads, head_dim)).permute(2, 1, 0, 3)  # (B, T, d) -> (NH, T, B, hd)
        recurrent_t = recurrent.transpose(1, 2)  # (NH, 4hd, hd)
        dpre = hs.new_empty(heads, steps, batch, GATES, head_dim)  # = d wx, step by step
        dh = _heads(dh_last, heads) + dyh[:, -1]  # (NH, B, hd)
        dc = _heads(dc_last, heads).clone()
        dn = _heads(dn_last, heads).clone()
        for t in range(steps - 1, -1, -1):
            dp = dpre[:, t]  # (NH, B, 4, hd)
            h, n = hs[:, t + 1], ns[:, t + 1]
            # h' = σ(õ) c'/n':  dc' += dh σ(õ)/n',  dn' −= dh h'/n',  dõ = dh h' (1 − σ(õ))
            r = dh / n
            dc.addcmul_(r, o[:, t])
            dn.addcmul_(r, h, value=-1.0)
            dh_h = dh * h
            torch.addcmul(dh_h, dh_h, o[:, t], value=-1.0, out=dp[:, :, 3])
            # c' = f' c + i' z, n' = f' n + i':  dĩ = (dc' z + dn') i',  dz̃ = dc' i' (1 − z²),
            # df̃ = (dc' c + dn' n) f' d log f/df̃
            dc_i = dc * i_s[:, t]
            dc_i_z = dc_i * z[:, t]
            torch.addcmul(dc_i_z, dn, i_s[:, t], out=dp[:, :, 0])
            torch.addcmul(dc_i, dc_i_z, z[:, t], value=-1.0, out=dp[:, :, 2])
            df = torch.mul(dc, cs[:, t], out=dp[:, :, 1]).addcmul_(dn, ns[:, t])
            df.mul_(f_s_dlog_f[:, t])
            if extra is not None:
                dp[:, :, :2].add_(extra[:, t])
            dc.mul_(f_s[:, t])  # -> gradient of c, n before the step
            dn.mul_(f_s[:, t])
            flat = dp.view(heads, batch, GATES * head_dim)  # (NH, B, 4hd)
            dh = torch.baddbmm(dyh[:, t - 1], flat, recurrent_t) if t else flat @ recurrent_t

        # R's gradient: one product over all T·B rows of each head.
        rows = steps * batch
        h_rows = hs[:, :-1].reshape(heads, rows, head_dim)  # (NH, T·B, hd), a view
        d_recurrent = h_rows.transpose(1, 2) @ dpre.view(heads, rows, GATES * head_dim)
        # m_0 enters only through the first step's f', which scales c_0 and n_0
        dm0 = cs[:, 0] * dc + ns[:, 0] * dn
        if extra is not None:
            dm0 += dm0_chain
        dwx = dpre.permute(2, 1, 3, 0, 4)  # (NH, T, B, 4, hd) -> (B, T, 4, NH, hd)
        return (dwx, *(_batch_first(s) for s in (dh, dc, dn, dm0)), d_recurrent, None)


def _stabiliser_chain(g, i_s, f_s, f_s_dlog_f, fresh):
    """Gradient g of m_T followed back through m_t = max(log f + m_{t−1}, ĩ) (m_t = ĩ where the
    state starts afresh): -> (its share reaching m_0 (NH, B, hd), its share of dĩ, df̃
    (NH, T, B, 2, hd)). g, fresh (NH, B, hd); i_s, f_s, f_s_dlog_f (NH, T, B, hd).

    The branch max took is the one whose exponential is 1: i' = exp(ĩ − m'), f' = exp(log f + m
    − m'); both are 1 on a tie, where the gradient is split evenly, as torch.maximum does.
    """
    to_f = (f_s > i_s).to(g.dtype) + 0.5 * (f_s == i_s).to(g.dtype)  # (NH, T, B, hd)
    to_f[:, 0].masked_fill_(fresh, 0.0)
    # gradient of m_t for t = 1..T: g times the product of to_f over the later steps
    later = torch.cumprod(to_f.flip(1), dim=1).flip(1)  # (NH, T, B, hd): Π_{s ≥ t} to_f
    dm = torch.cat([later[:, 1:], torch.ones_like(later[:, :1])], dim=1) * g.unsqueeze(1)
    # where to_f > 0, f' = 1, so f' d log f/df̃ is d log f/df̃ itself
    extra = torch.stack([dm * (1.0 - to_f), dm * to_f * f_s_dlog_f], dim=3)
    return later[:, 0] * g, extra


def slstm_window(
    wx: Tensor,
    h0: Tensor,
    c0: Tensor,
    n0: Tensor,
    m0: Tensor,
    recurrent: Tensor,
    *,
    forget_gate: str,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """(y (B, T, d), h_T, c_T, n_T, m_T) of a whole window; wx (B, T, 4, NH, hd) includes the bias."""
    return SLSTMWindow.apply(wx, h0, c0, n0, m0, recurrent, forget_gate == "sigmoid")


def slstm_kernel(cell, wx: Tensor, state, recurrent: Tensor):
    """(y (B, T, d), (h, c, n, m)) of `SLSTMCell`'s recurrence over its input side wx
    (B, T, 4, NH, hd) with the window's recurrent maps, or None where the step loop should
    run. It multiplies through no packed products, so without gradients the loop runs."""
    if not function_applies(cell, wx, state, packed_products=False):
        return None
    y, h, c, n, m = slstm_window(wx, *state[:4], recurrent, forget_gate=cell.config.forget_gate)
    return y, (h, c, n, m)
