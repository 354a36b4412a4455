"""A whole Mogrifier LSTM window as one autograd Function with a hand-written backward.

Same maths as looping `MogrifierCell.step` (arXiv:1909.01792; see cells/mogrifier.py):
r rounds of mutual gating of x_t and h_{t-1}, then the LSTM update

    [i, f, g, o] = x W_ihᵀ + h W_hhᵀ + b_ih + b_hh,   c' = σ(f) c + σ(i) tanh(g),   h' = σ(o) tanh(c')

(capped input gate: min(σ(i), 1 − σ(f)) instead of σ(i)). Why a Function:
under autograd every step adds its own outer products to the weight gradients,
(4H, B) @ (B, E) with B = 32 rows, which runs far below the matrix unit's
speed and re-reads each gradient buffer T times. Here the backward loop only
carries the gradient through time and keeps every step's gate gradients; the
weight gradients are then one (·, T·B) @ (T·B, ·) product each, as in fused
LSTM kernels. The forward keeps what the backward needs (every round's sigmoid,
every intermediate x and h, the LSTM's activations and cells) in per-window
buffers instead of an autograd graph.

Every per-step product is against a matrix fixed for the window, so each is a
`StepProduct` (packed.py): packed once per window for oneDNN, which then skips
the re-packing torch.mm's MKL does on every call. The final x and h share one
buffer, so the gates are one product with [W_ih, W_hh] forward and backward.

The step loop in `MogrifierCell` stays the reference; the parity tests compare
outputs and gradients in float64 and gradcheck this Function.

Shapes: B batch, T window, E input size, H hidden size, k rank, G = 4H gates.
Buffers are time-major (T, B, ·) so a step's slice is contiguous.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from lstmlab.kernels.lstm import lstm_kernel
from lstmlab.kernels.lstm_update import (
    LSTMBackward,
    backward_needed,
    lstm_update_into,
    sigmoid_slope,
    step_views,
)
from lstmlab.kernels.packed import StepProduct
from lstmlab.kernels.policy import function_applies


def _unpack_rounds(rounds: int, low_rank: bool, params: tuple[Tensor, ...]):
    """Per round (weights, bias): weights is (W,) full or (left, right) factored."""
    per = 3 if low_rank else 2
    assert len(params) == per * rounds
    return [(params[per * j : per * j + per - 1], params[per * j + per - 1]) for j in range(rounds)]


def _through(products: list[StepProduct], v: Tensor, middle: Tensor | None, add=None) -> Tensor:
    """v through one round's matrix: one product, or two for a factored one, whose (B, k)
    middle result is written to `middle` (kept for the weight gradients)."""
    if len(products) == 2:
        v = products[0](v, out=middle)
    return products[-1](v, add=add)


class MogrifierWindow(torch.autograd.Function):
    """(x (B, T, E), h0, c0 (B, H), mask (B, H) or None, keep, LSTM weights, round params)
    -> (y (B, T, H), h_T, c_T). Round params, flat: per round (W, b) or (left, right, b);
    keep: whether a backward will run (`backward_needed`), else no per-window buffers."""

    @staticmethod
    def forward(
        ctx,
        x: Tensor,
        h0: Tensor,
        c0: Tensor,
        mask: Tensor | None,
        keep: bool,
        capped: bool,
        low_rank: bool,
        weight_ih: Tensor,
        weight_hh: Tensor,
        bias_ih: Tensor,
        bias_hh: Tensor,
        *round_params: Tensor,
    ):
        batch, steps, input_dim = x.shape
        hidden = h0.shape[1]
        r = len(round_params) // (3 if low_rank else 2)
        rounds = _unpack_rounds(r, low_rank, round_params)
        n_x, n_h = (r + 1) // 2, r // 2
        bias = bias_ih + bias_hh  # (G,)
        new = x.new_empty
        # Without a backward to serve (inference), each buffer holds one step's scratch.
        span = steps if keep else 1
        # The final x and h sit side by side in one (T, B, E + H) buffer, so the gates are one
        # product with [W_ih, W_hh] per step (and one weight gradient for both).
        final = new(steps if n_x == 0 else span, batch, input_dim + hidden)
        x_fin, h_fin = final.split([input_dim, hidden], dim=2)
        # xs[0] is x itself; xs[a] (a >= 1) is x after its a-th rescaling; likewise hs, with
        # hs[0] the (masked) h_{t-1}. The last of each is its half of `final`.
        xs = [x.transpose(0, 1)] + [new(span, batch, input_dim) for _ in range(n_x)]  # (T, B, E)
        hs = [new(span, batch, hidden) for _ in range(n_h + 1)]  # (T, B, H)
        hs[n_h] = h_fin
        if n_x:
            xs[n_x] = x_fin
        else:
            x_fin.copy_(xs[0])
        sig = [new(span, batch, input_dim if j % 2 == 0 else hidden) for j in range(r)]
        us = [
            new(span, batch, w[-1].shape[0]) if low_rank else None for w, _ in rounds
        ]  # (T, B, k)
        # per round, its product(s) against the window's fixed matrices: right then left factor
        round_products = [
            [StepProduct(w.t(), batch, steps) for w in reversed(ws)] for ws, _ in rounds
        ]
        w_gates = torch.cat([weight_ih, weight_hh], dim=1)  # (G, E + H), kept for the backward
        by_gates = StepProduct(w_gates.t(), batch, steps)
        acts = new(span, batch, 4 * hidden)  # σ(i), σ(f), tanh(g), σ(o)
        cells = new(steps + 1 if keep else 2, batch, hidden)  # c_0 .. c_T
        y = new(batch, steps, hidden)
        cells[0] = c0
        # Per round, the per-step views it reads and writes, taken once for the window:
        # (input, version read, version written, σ, middle product), each T × (B, ·).
        plans = []
        for j in range(r):
            a = j // 2  # round j turns version a of x (j even) or h (j odd) into a + 1
            inp, vs = (hs[a], xs) if j % 2 == 0 else (xs[a + 1], hs)
            views = (inp, vs[a], vs[a + 1], sig[j], us[j] if low_rank else None)
            plans.append([step_views(v, steps) for v in views])
        h_masked, final_t = step_views(hs[0], steps), step_views(final, steps)
        acts_t, cells_t = step_views(acts, steps), step_views(cells, steps + 1)
        y_t = y.unbind(1)
        zero = x.new_zeros(())
        h_prev = h0
        for t in range(steps):
            if mask is None:
                h_masked[t].copy_(h_prev)
            else:
                torch.mul(h_prev, mask, out=h_masked[t])
            for (inp, old, out, sg, u), products, (_, b) in zip(plans, round_products, rounds):
                pre = _through(products, inp[t], u[t], add=b)
                s = torch.sigmoid(pre, out=sg[t])
                torch.addcmul(zero, old[t], s, value=2.0, out=out[t])  # 2 σ ⊙ v
            gates = by_gates(final_t[t], add=bias)  # (B, G)
            h_prev = lstm_update_into(gates, acts_t[t], cells_t[t], cells_t[t + 1], y_t[t], capped)
        if keep:
            ctx.capped, ctx.low_rank, ctx.rounds = capped, low_rank, r
            ctx.save_for_backward(x, mask, w_gates, *round_params, acts, cells)
            ctx.buffers = (xs, hs, sig, us, final)  # the window's own: nobody else can modify them
        return y, y[:, -1].clone(), cells_t[steps].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, dy: Tensor, dh_last: Tensor, dc_last: Tensor):
        x, mask, w_gates, *rest = ctx.saved_tensors
        round_params, acts, cells = tuple(rest[:-2]), rest[-2], rest[-1]
        xs, hs, sig, us, final = ctx.buffers
        xs = [x.transpose(0, 1), *xs[1:]]  # (T, B, E): x itself, version-checked by autograd
        r, low_rank = ctx.rounds, ctx.low_rank
        rounds = _unpack_rounds(r, low_rank, round_params)
        steps, batch, gates_dim = acts.shape
        hidden = gates_dim // 4
        input_dim = x.shape[2]
        new = acts.new_empty

        dgates = new(steps, batch, gates_dim)  # every step's gate pre-activation gradient
        lstm = LSTMBackward(acts, cells, ctx.capped, dgates)
        # Round j's pre-activation gradient at every step, kept for its weight gradients.
        dpre = [new(s.shape) for s in sig]  # (T, B, out)
        dus = [new(u.shape) if low_rank else None for u in us]  # (T, B, k)
        # per round, the products that take dp back to its input: left then right factor
        round_products = [[StepProduct(w, batch, steps) for w in ws] for ws, _ in rounds]
        by_gates = StepProduct(w_gates, batch, steps)
        # per round (last first), its per-step views: (σ, version it read, dp, d middle)
        plans = []
        for j in range(r - 1, -1, -1):
            views = (sig[j], (xs if j % 2 == 0 else hs)[j // 2], dpre[j], dus[j])
            plans.append((j % 2 == 0, round_products[j], *(step_views(v, steps) for v in views)))

        dx = new(batch, steps, input_dim)  # (B, T, E)
        dx_t, dy_t = dx.unbind(1), dy.unbind(1)
        zero = acts.new_zeros(())
        dh = dh_last.clone()
        dc = dc_last.clone()
        for t in range(steps - 1, -1, -1):
            dh += dy_t[t]
            dg_t = lstm.step(t, dh, dc)  # dc becomes the gradient of c_{t-1}
            # gradients of the final x and h, (B, E) and (B, H)
            dxv, dhv = by_gates(dg_t).split([input_dim, hidden], dim=1)
            for wrote_x, products, sg, old, dp_t, du_t in plans:
                # Round j: v_{a+1} = 2 σ(p) v_a, so dp = dv_{a+1} v_a 2σ(1 − σ), dv_a = dv_{a+1} 2σ.
                dout, dother = (dxv, dhv) if wrote_x else (dhv, dxv)  # dout: the version written
                s = sg[t]
                dp = torch.addcmul(zero, dout, old[t], value=2.0, out=dp_t[t])
                dp.mul_(sigmoid_slope(s))
                torch.addcmul(zero, dout, s, value=2.0, out=dout)  # -> the version it read
                dother.add_(_through(products, dp, du_t[t]))
            dx_t[t].copy_(dxv)
            dh = dhv if mask is None else dhv * mask

        # Weight gradients: one product over all T·B rows each.
        rows = steps * batch
        flat = dgates.view(rows, gates_dim)  # (T·B, G)
        d_weight_ih, d_weight_hh = (flat.t() @ final.view(rows, -1)).split([input_dim, hidden], 1)
        d_bias = flat.sum(0)
        d_rounds: list[Tensor] = []
        for j in range(r):
            inp = (hs[j // 2] if j % 2 == 0 else xs[j // 2 + 1]).reshape(rows, -1)  # (T·B, in)
            dp = dpre[j].view(rows, -1)  # (T·B, out)
            if low_rank:
                d_rounds.append(dp.t() @ us[j].view(rows, -1))  # left (out, k)
                d_rounds.append(dus[j].view(rows, -1).t() @ inp)  # right (k, in)
            else:
                d_rounds.append(dp.t() @ inp)  # (out, in)
            d_rounds.append(dp.sum(0))
        return (
            dx,
            dh,
            dc,
            None,
            None,
            None,
            None,
            d_weight_ih,
            d_weight_hh,
            d_bias,
            d_bias.clone(),
            *d_rounds,
        )


# torch.compile runs the window eagerly, a graph break around the call: see lstm_update.py
@torch.compiler.disable
def mogrifier_window(
    x: Tensor,
    h0: Tensor,
    c0: Tensor,
    mask: Tensor | None,
    *,
    capped: bool,
    weight_ih: Tensor,
    weight_hh: Tensor,
    bias_ih: Tensor,
    bias_hh: Tensor,
    round_weights: list[tuple[Tensor, ...]],
    round_biases: list[Tensor],
) -> tuple[Tensor, Tensor, Tensor]:
    """(y (B, T, H), h_T, c_T) of a whole window; round_weights[j] is (W,) or (left, right)."""
    low_rank = bool(round_weights) and len(round_weights[0]) == 2
    flat = [p for w, b in zip(round_weights, round_biases) for p in (*w, b)]
    keep = backward_needed(x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, *flat)
    return MogrifierWindow.apply(
        x, h0, c0, mask, keep, capped, low_rank, weight_ih, weight_hh, bias_ih, bias_hh, *flat
    )


def mogrifier_kernel(cell, x: Tensor, state, constants):
    """(y (B, T, H), state) of `MogrifierCell` over x (B, T, E), or None where the step loop
    should run. `constants` is the cell's `window_constants`: round weights and biases, the
    window's W_hh and the state-dropout mask. No rounds and no mask is exactly `lstm`, fused
    kernel included."""
    weights, biases, weight_hh, mask = constants
    if not weights and mask is None:
        return lstm_kernel(cell, x, state, weight_hh)
    if not function_applies(cell, x, state, packed_products=True):
        return None
    y, h, c = mogrifier_window(
        x,
        state.h,
        state.c,
        mask,
        capped=cell.config.capped_input_gate,
        weight_ih=cell.weight_ih,
        weight_hh=weight_hh,
        bias_ih=cell.bias_ih,
        bias_hh=cell.bias_hh,
        round_weights=[w if isinstance(w, tuple) else (w,) for w in weights],
        round_biases=biases,
    )
    return y, type(state)(h, c)
