"""The LSTM update as used inside the hand-written window Functions (mogrifier, multiplicative).

Those Functions run a whole window in one autograd node and keep what their
backward needs in time-major buffers (T, B, ·). This file holds the part they
share: the LSTM cell update written into those buffers, and its backward,

    act = [σ(i), σ(f), tanh(g), σ(o)],   c_t = f c_{t−1} + i_eff g,   h_t = o tanh(c_t)

with i_eff = i, or min(i, 1 − f) for the capped input gate. `LSTMBackward`
carries the gradient back through one step at a time; `step_views` and
`backward_needed` let a forward without a backward keep one step's scratch
instead of per-window buffers.

Shapes: B batch, T window, H hidden size, G = 4H gates.
"""

from __future__ import annotations

import torch
from torch import Tensor

# torch.compile runs the window Functions eagerly (`torch.compiler.disable` on their
# wrappers, a graph break around each call): they gain nothing from inductor on CPU
# (benchmarks/fusion.py), inductor cannot lower oneDNN's packed matrices, and dynamo traced
# the per-step views of their buffers (`step_views`) into wrong outputs (torch 2.13, caught
# by tests/kernels/test_packed.py).


def backward_needed(*tensors: Tensor | None) -> bool:
    """Whether autograd will call the window Function's backward: grad mode is on and some
    input requires a gradient. Without one the forward keeps no per-window buffers."""
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def step_views(buffer: Tensor | None, count: int, dim: int = 0) -> list[Tensor | None]:
    """`count` per-step views of `buffer` along `dim`, taken once for the window.

    A buffer with one slice per step gives its slices in order. A forward that no
    backward will read keeps only scratch: one slice, reused every step, or two for
    a carried state (step t reads one and writes the other), taken in turn. A missing
    buffer (None) gives None at every step.
    """
    if buffer is None:
        return [None] * count
    views = buffer.unbind(dim)
    return [views[t % len(views)] for t in range(count)]


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


def sigmoid_slope(s: Tensor) -> Tensor:
    """σ' = σ (1 − σ) from σ, as s − s² (one op, no scalar tensor)."""
    return torch.addcmul(s, s, s, value=-1.0)


class LSTMBackward:
    """The LSTM update's backward, one step at a time, from the forward's buffers.

    Each step's factors are formed from that step's (B, ·) slices: window-sized
    temporaries would cost more in memory traffic (and fresh pages) than the
    arithmetic they hold. The per-step slices are taken once per window: at these sizes
    a step's cost is mostly Python overhead per torch call, and indexing is part of it.
    """

    def __init__(self, acts: Tensor, cells: Tensor, capped: bool, dgates: Tensor) -> None:
        """acts (T, B, G) as written by `lstm_update_into`; cells (T + 1, B, H): c_0 … c_T;
        dgates (T, B, G), any strides: where step t's gate gradients go."""
        self.capped = capped
        self.acts = [gate.unbind(0) for gate in acts.chunk(4, dim=2)]  # i, f, g, o: T × (B, H)
        self.cells = cells.unbind(0)
        self.dgates = dgates.unbind(0)
        self.dparts = [gate.unbind(0) for gate in dgates.chunk(4, dim=2)]
        self.one = acts.new_ones(())

    def step(self, t: int, dh: Tensor, dc: Tensor) -> Tensor:
        """Step t's gate gradients (B, G), from dh_t and dc_t (the part from later steps);
        dc (B, H) is updated in place to dc_{t−1}'s part through the cell."""
        i, f, g, o = (gate[t] for gate in self.acts)  # (B, H) each
        d_i, d_f, d_g, d_o = (part[t] for part in self.dparts)
        tanh_c = torch.tanh(self.cells[t + 1])
        # h = o tanh(c):  d õ = dh tanh(c) o (1 − o);  dc += dh o (1 − tanh²c)
        torch.mul(dh, tanh_c, out=d_o).mul_(sigmoid_slope(o))
        dc.addcmul_(dh, torch.addcmul(o, tanh_c.mul_(tanh_c), o, value=-1.0))
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
        torch.mul(dc, d_i_part, out=d_i).mul_(sigmoid_slope(i))
        torch.mul(dc, d_f_part, out=d_f).mul_(sigmoid_slope(f))
        torch.mul(dc, i_eff, out=d_g).mul_(torch.addcmul(self.one, g, g, value=-1.0))  # 1 − g²
        dc.mul_(f)
        return self.dgates[t]
