"""A whole multiplicative-LSTM window as one autograd Function with a hand-written backward.

Same maths as looping `multiplicative_step` (Krause et al. 2016, arXiv:1609.07959;
see cells/multiplicative.py), from the input parts that are hoisted out of the loop,
x_m = x W_mxᵀ and x_g = x W_hxᵀ + b:

    p_t = h_{t−1} ⊙ mask      u_t = p_t W_mhᵀ      m_t = x_m,t ⊙ u_t
    gates_t = x_g,t + m_t W_hmᵀ,   then the LSTM update of lstm_update.py

Why a Function: under autograd each step adds its own outer products to the
gradients of W_mh and W_hm, (H, B) @ (B, H) with B = 32 rows, far below the
matrix unit's speed, and dominated a training step. Here the backward loop
carries the gradient through time with two (B, ·) @ (·, H) products per step and
keeps every step's gate and u gradients; each weight gradient is then one
(·, T·B) @ (T·B, H) product. The forward keeps p, u, m, the gate activations
and the cells in per-window buffers instead of an autograd graph.

The input parts x_m and x_g are one product inside the Function, and the backward
fills their gradient directly in the layout that product needs. Weight
normalisation and DropConnect stay in autograd: the Function takes the matrices
they produce and returns those matrices' gradients.
The per-step products are `StepProduct`s (packed.py): W_mh and W_hm packed once
per window for oneDNN, which then skips the re-packing torch.mm's MKL does on every
call; the window-sized products go through oneDNN too.
The step loop in `MultiplicativeCell` stays the reference; the parity tests
compare outputs and gradients in float64 and gradcheck this Function.

Shapes: B batch, T window, H hidden size (= size of m), G = 4H gates. Buffers are
time-major (T, B, ·) so a step's slice is contiguous.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from lstmlab.kernels.lstm_update import (
    LSTMBackward,
    backward_needed,
    lstm_update_into,
    step_views,
)
from lstmlab.kernels.packed import StepProduct, linear, matmul
from lstmlab.kernels.policy import function_applies


class MultiplicativeWindow(torch.autograd.Function):
    """(x (B, T, E), h0, c0 (B, H), mask (B, H) or None, keep, W_in (5H, E) = [W_mx; W_hx],
    b_in (5H,) = [0; b], W_mh (H, H), W_hm (G, H)) -> (y (B, T, H), h_T, c_T); keep: whether
    a backward will run (`backward_needed`), else no per-window buffers."""

    @staticmethod
    def forward(
        ctx,
        x: Tensor,
        h0: Tensor,
        c0: Tensor,
        mask: Tensor | None,
        keep: bool,
        w_in: Tensor,
        b_in: Tensor,
        w_mh: Tensor,
        w_hm: Tensor,
    ):
        batch, steps, _ = x.shape
        hidden = w_mh.shape[0]
        new = x.new_empty
        both = linear(x, w_in, b_in)  # (B, T, 5H): [x_m, x_g]
        x_m, x_g = both.split([hidden, 4 * hidden], dim=2)
        span = steps if keep else 1  # without a backward to serve, one step's scratch
        prevs = new(span, batch, hidden)  # p_t: the (masked) h_{t−1}
        us = new(span, batch, hidden)  # u_t = p_t W_mhᵀ
        m_all = new(batch, span, hidden)  # m_t, batch-major like the gate gradients it meets
        acts = new(span, batch, 4 * hidden)  # σ(i), σ(f), tanh(a), σ(o)
        cells = new(steps + 1 if keep else 2, batch, hidden)  # c_0 .. c_T
        y = new(batch, steps, hidden)
        cells[0] = c0
        # per-step views, taken once for the window
        prevs_t, us_t, acts_t = (step_views(b, steps) for b in (prevs, us, acts))
        ms_t, cells_t = step_views(m_all, steps, dim=1), step_views(cells, steps + 1)
        x_m_t, x_g_t, y_t = x_m.unbind(1), x_g.unbind(1), y.unbind(1)
        h_prev = h0
        by_mh, by_hm = StepProduct(w_mh.t(), batch, steps), StepProduct(w_hm.t(), batch, steps)
        for t in range(steps):
            p = prevs_t[t]
            if mask is None:
                p.copy_(h_prev)
            else:
                torch.mul(h_prev, mask, out=p)
            u = by_mh(p, out=us_t[t])
            m = torch.mul(x_m_t[t], u, out=ms_t[t])
            gates = by_hm(m, add=x_g_t[t])  # (B, G)
            h_prev = lstm_update_into(gates, acts_t[t], cells_t[t], cells_t[t + 1], y_t[t], False)
        if keep:
            ctx.save_for_backward(x, mask, w_in, w_mh, w_hm, x_m, prevs, us, m_all, acts, cells)
        return y, y[:, -1].clone(), cells_t[steps].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, dy: Tensor, dh_last: Tensor, dc_last: Tensor):
        x, mask, w_in, w_mh, w_hm, x_m, prevs, us, m_all, acts, cells = ctx.saved_tensors
        steps, batch, hidden = us.shape
        # The gradient of the input parts [x_m, x_g], filled step by step: its x_g part is
        # every step's gate gradient. Batch-major, so x's gradient is one product at the end.
        d_both = x.new_empty(batch, steps, 5 * hidden)
        d_x_m, d_gates = d_both.split([hidden, 4 * hidden], dim=2)
        lstm = LSTMBackward(acts, cells, False, d_gates.transpose(0, 1))
        dus = us.new_empty(steps, batch, hidden)  # every step's u gradient
        # per-step views, taken once for the window
        dy_t, d_x_m_t, x_m_t = dy.unbind(1), d_x_m.unbind(1), x_m.unbind(1)
        us_t, dus_t = us.unbind(0), dus.unbind(0)
        dh = dh_last.clone()
        dc = dc_last.clone()
        by_hm, by_mh = StepProduct(w_hm, batch, steps), StepProduct(w_mh, batch, steps)
        for t in range(steps - 1, -1, -1):
            dh += dy_t[t]
            dg_t = lstm.step(t, dh, dc)  # dc becomes the gradient of c_{t−1}
            dm = by_hm(dg_t)  # (B, H)
            torch.mul(dm, us_t[t], out=d_x_m_t[t])
            du = torch.mul(dm, x_m_t[t], out=dus_t[t])
            dh = by_mh(du)  # gradient of p_t, (B, H)
            if mask is not None:
                dh.mul_(mask)
        # Weight gradients: one product over all T·B rows each.
        rows = steps * batch
        flat = d_both.view(rows, 5 * hidden)
        d_x = matmul(flat, w_in).view_as(x)  # (B, T, E)
        d_w_in = flat.t() @ x.reshape(rows, -1)  # (5H, E)
        d_b_in = flat.sum(0)
        d_w_hm = d_gates.reshape(rows, 4 * hidden).t() @ m_all.view(rows, hidden)  # (G, H)
        d_w_mh = dus.view(rows, hidden).t() @ prevs.view(rows, hidden)  # (H, H)
        return d_x, dh, dc, None, None, d_w_in, d_b_in, d_w_mh, d_w_hm


# torch.compile runs the window eagerly, a graph break around the call: see lstm_update.py
@torch.compiler.disable
def multiplicative_window(
    x: Tensor,
    h0: Tensor,
    c0: Tensor,
    mask: Tensor | None,
    *,
    w_in: Tensor,
    b_in: Tensor,
    w_mh: Tensor,
    w_hm: Tensor,
) -> tuple[Tensor, Tensor, Tensor]:
    """(y (B, T, H), h_T, c_T) of a whole window."""
    keep = backward_needed(x, h0, c0, w_in, b_in, w_mh, w_hm)
    return MultiplicativeWindow.apply(x, h0, c0, mask, keep, w_in, b_in, w_mh, w_hm)


def multiplicative_kernel(cell, x: Tensor, state, constants):
    """(y (B, T, H), state) of `MultiplicativeCell` over x (B, T, E), or None where the step
    loop should run. `constants` is the cell's `window_constants`: the window's matrices and
    the state-dropout mask."""
    weights, mask = constants
    if not function_applies(cell, x, state, packed_products=True):
        return None
    w_in, b_in = cell.input_weights(weights)
    y, h, c = multiplicative_window(
        x, state.h, state.c, mask, w_in=w_in, b_in=b_in, w_mh=weights.mh, w_hm=weights.hm
    )
    return y, type(state)(h, c)
