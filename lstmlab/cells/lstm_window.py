"""The LSTM update as used inside the hand-written window Functions (mogrifier, multiplicative).

Those Functions run a whole window in one autograd node and keep what their
backward needs in time-major buffers (T, B, ·). This file holds the part they
share: the LSTM cell update written into those buffers, and its backward,

    act = [σ(i), σ(f), tanh(g), σ(o)],   c_t = f c_{t−1} + i_eff g,   h_t = o tanh(c_t)

with i_eff = i, or min(i, 1 − f) for the capped input gate. `LSTMBackward`
carries the gradient back through one step at a time.

Shapes: B batch, T window, H hidden size, G = 4H gates.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor


def lstm_update_into(
    gates: Tensor, act: Tensor, c_prev: Tensor, c_out: Tensor, h_out: Tensor, capped: bool
) -> Tensor:
    """One step's update from pre-activations (B, G), written into act (B, G), c_out and h_out (B, H).

    Returns h_out, the next step's h_{t−1}.
    """
    hidden = c_prev.shape[-1]
    torch.sigmoid(gates, out=act)
    torch.tanh(gates[:, 2 * hidden : 3 * hidden], out=act[:, 2 * hidden : 3 * hidden])
    i, f, g, o = act.chunk(4, dim=1)
    if capped:
        i = torch.minimum(i, 1.0 - f)
    c = torch.mul(f, c_prev, out=c_out).addcmul_(i, g)
    return torch.mul(o, torch.tanh(c), out=h_out)


class LSTMBackward(NamedTuple):
    """The LSTM update's backward, one step at a time, from the forward's buffers.

    Each step's factors are formed from that step's (B, ·) slices: window-sized
    temporaries would cost more in memory traffic (and fresh pages) than the
    arithmetic they hold.
    """

    acts: Tensor  # (T, B, G) as written by `lstm_update_into`
    cells: Tensor  # (T + 1, B, H): c_0 … c_T
    capped: bool

    def step(self, t: int, dh: Tensor, dc: Tensor, dgates_out: Tensor) -> None:
        """Step t's gate gradients into dgates_out (B, G) from dh_t and dc_t (the part from
        later steps); dc (B, H) is updated in place to dc_{t−1}'s part through the cell."""
        i, f, g, o = self.acts[t].chunk(4, dim=1)  # (B, H) each
        d_i, d_f, d_g, d_o = dgates_out.chunk(4, dim=1)
        tanh_c = torch.tanh(self.cells[t + 1])
        # h = o tanh(c):  d õ = dh tanh(c) o (1 − o);  dc += dh o (1 − tanh²c)
        torch.mul(dh, tanh_c, out=d_o).mul_(o).mul_(1.0 - o)
        dc.addcmul_(dh, tanh_c.mul_(tanh_c).neg_().add_(1.0).mul_(o))
        c_prev = self.cells[t]
        if self.capped:
            # i_eff = min(i, 1 − f); torch.minimum sends the gradient to the smaller
            # argument, split evenly on a tie: i gets `share`, 1 − f the rest.
            one_minus_f = 1.0 - f
            share = (i < one_minus_f).to(i.dtype).add_((i == one_minus_f).to(i.dtype), alpha=0.5)
            i_eff = torch.minimum(i, one_minus_f)
            d_f_part = c_prev - g * (1.0 - share)  # dc_t/df
            d_i_part = g * share
        else:
            i_eff, d_f_part, d_i_part = i, c_prev, g
        torch.mul(dc, d_i_part, out=d_i).mul_(i).mul_(1.0 - i)
        torch.mul(dc, d_f_part, out=d_f).mul_(f).mul_(1.0 - f)
        torch.mul(dc, i_eff, out=d_g).mul_(1.0 - g * g)
        dc.mul_(f)
