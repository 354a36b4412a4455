"""A whole Mogrifier LSTM window as one autograd Function with a hand-written backward.

Same maths as looping `MogrifierCell.step` (arXiv:1909.01792; see mogrifier.py):
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

The step loop in `MogrifierCell` stays the reference; the parity tests compare
outputs and gradients in float64 and gradcheck this Function.

Shapes: B batch, T window, E input size, H hidden size, k rank, G = 4H gates.
Buffers are time-major (T, B, ·) so a step's slice is contiguous.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from lstmlab.cells.lstm_window import LSTMBackward, lstm_update_into


def _unpack_rounds(rounds: int, low_rank: bool, params: tuple[Tensor, ...]):
    """Per round (weights, bias): weights is (W,) full or (left, right) factored."""
    per = 3 if low_rank else 2
    assert len(params) == per * rounds
    return [(params[per * j : per * j + per - 1], params[per * j + per - 1]) for j in range(rounds)]


def _round_pre(inp: Tensor, weights: tuple[Tensor, ...], bias: Tensor, u_out: Tensor | None):
    """inp Wᵀ + b; a factored W's (B, k) middle product is written to `u_out` for the backward."""
    if len(weights) == 1:
        return torch.addmm(bias, inp, weights[0].t())  # (B, out)
    left, right = weights
    u = torch.mm(inp, right.t(), out=u_out)  # (B, k)
    return torch.addmm(bias, u, left.t())  # (B, out)


class MogrifierWindow(torch.autograd.Function):
    """(x (B, T, E), h0, c0 (B, H), mask (B, H) or None, LSTM weights, round params)
    -> (y (B, T, H), h_T, c_T). Round params, flat: per round (W, b) or (left, right, b)."""

    @staticmethod
    def forward(
        ctx,
        x: Tensor,
        h0: Tensor,
        c0: Tensor,
        mask: Tensor | None,
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
        # xs[0] is x itself; xs[a] (a >= 1) is x after its a-th rescaling; likewise hs, with
        # hs[0] the (masked) h_{t-1}. The last of each feeds the LSTM update.
        xs = [x.transpose(0, 1)] + [new(steps, batch, input_dim) for _ in range(n_x)]  # (T, B, E)
        hs = [new(steps, batch, hidden) for _ in range(n_h + 1)]  # (T, B, H)
        sig = [new(steps, batch, input_dim if j % 2 == 0 else hidden) for j in range(r)]
        us = [
            new(steps, batch, w[-1].shape[0]) if low_rank else None for w, _ in rounds
        ]  # (T, B, k)
        acts = new(steps, batch, 4 * hidden)  # σ(i), σ(f), tanh(g), σ(o)
        cells = new(steps + 1, batch, hidden)  # c_0 .. c_T
        y = new(batch, steps, hidden)
        cells[0] = c0
        h_prev = h0
        for t in range(steps):
            if mask is None:
                hs[0][t] = h_prev
            else:
                torch.mul(h_prev, mask, out=hs[0][t])
            for j, (weights, b) in enumerate(rounds):
                a = j // 2  # this round turns version a of x (j even) or h (j odd) into a + 1
                inp, vs = (hs[a], xs) if j % 2 == 0 else (xs[a + 1], hs)
                u_out = us[j][t] if low_rank else None
                s = torch.sigmoid(_round_pre(inp[t], weights, b, u_out), out=sig[j][t])
                torch.mul(vs[a][t], s, out=vs[a + 1][t]).mul_(2.0)
            x_fin, h_fin = xs[n_x][t], hs[n_h][t]
            gates = torch.addmm(bias, x_fin, weight_ih.t()).addmm_(h_fin, weight_hh.t())  # (B, G)
            h_prev = lstm_update_into(gates, acts[t], cells[t], cells[t + 1], y[:, t], capped)
        ctx.capped, ctx.low_rank, ctx.rounds = capped, low_rank, r
        ctx.save_for_backward(x, mask, weight_ih, weight_hh, *round_params, acts, cells)
        ctx.buffers = (xs, hs, sig, us)  # the window's own buffers: nobody else can modify them
        return y, y[:, -1].clone(), cells[steps].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, dy: Tensor, dh_last: Tensor, dc_last: Tensor):
        x, mask, weight_ih, weight_hh, *rest = ctx.saved_tensors
        round_params, acts, cells = tuple(rest[:-2]), rest[-2], rest[-1]
        xs, hs, sig, us = ctx.buffers
        xs = [x.transpose(0, 1), *xs[1:]]  # (T, B, E): x itself, version-checked by autograd
        r, low_rank = ctx.rounds, ctx.low_rank
        rounds = _unpack_rounds(r, low_rank, round_params)
        n_x, n_h = (r + 1) // 2, r // 2
        steps, batch, gates_dim = acts.shape
        hidden = gates_dim // 4
        new = acts.new_empty

        lstm = LSTMBackward(acts, cells, ctx.capped)
        # Round j's pre-activation gradient at every step, kept for its weight gradients.
        dpre = [new(s.shape) for s in sig]  # (T, B, out)
        dus = [new(u.shape) if low_rank else None for u in us]  # (T, B, k)

        dgates = new(steps, batch, gates_dim)  # every step's gate pre-activation gradient
        dx = new(batch, steps, weight_ih.shape[1])  # (B, T, E)
        dh = dh_last.clone()
        dc = dc_last.clone()
        for t in range(steps - 1, -1, -1):
            dh += dy[:, t]
            dg_t = dgates[t]
            lstm.step(t, dh, dc, dg_t)  # dc becomes the gradient of c_{t-1}
            dxv = dg_t @ weight_ih  # (B, E): gradient of the final x
            dhv = dg_t @ weight_hh  # (B, H): gradient of the final h
            for j in range(r - 1, -1, -1):
                # Round j: v_{a+1} = 2 σ(p) v_a, so dp = dv_{a+1} v_a 2σ(1 − σ), dv_a = dv_{a+1} 2σ.
                dout = dxv if j % 2 == 0 else dhv  # the version this round wrote, (B, out)
                s, old = sig[j][t], (xs if j % 2 == 0 else hs)[j // 2][t]
                dout.mul_(2.0)
                dp = torch.mul(dout, old, out=dpre[j][t]).mul_(torch.addcmul(s, s, s, value=-1.0))
                dout.mul_(s)  # -> gradient of the version it read
                if low_rank:
                    left, right = rounds[j][0]
                    dinp = torch.mm(dp, left, out=dus[j][t]) @ right  # (B, k) -> (B, in)
                else:
                    dinp = dp @ rounds[j][0][0]
                (dhv if j % 2 == 0 else dxv).add_(dinp)
            dx[:, t] = dxv
            dh = dhv if mask is None else dhv * mask

        # Weight gradients: one product over all T·B rows each.
        rows = steps * batch
        flat = dgates.view(rows, gates_dim)  # (T·B, G)
        d_weight_ih = flat.t() @ xs[n_x].reshape(rows, -1)  # (G, E)
        d_weight_hh = flat.t() @ hs[n_h].reshape(rows, hidden)  # (G, H)
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
            d_weight_ih,
            d_weight_hh,
            d_bias,
            d_bias.clone(),
            *d_rounds,
        )


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
    return MogrifierWindow.apply(
        x, h0, c0, mask, capped, low_rank, weight_ih, weight_hh, bias_ih, bias_hh, *flat
    )
