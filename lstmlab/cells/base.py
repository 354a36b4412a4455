"""The contract every cell honours, so the model, training and sampling never ask which cell they run.

    state = cell.initial_state(B, device=..., dtype=...)   # NamedTuple of tensors, batch first
    y, state = cell(x, state)                               # x (B, T, E) -> y (B, T, H)
    y_t, state = cell.step(x_t, state)                      # x_t (B, E) -> y_t (B, H)

`forward` over a window must equal looping `step`; the loop below is the
reference each cell's fast window path is tested against. Every state tensor
has the batch as its first dimension, so detaching, slicing a stream out of a
batch and saving state are the same code for every cell.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import NamedTuple

import torch
from torch import Tensor, nn

from lstmlab.cells.packed import MIN_PACKED_ROW_STEPS, packing_applies


class RecurrentCell(nn.Module, ABC):
    """Base class: subclasses set `input_dim`, `hidden_dim` and implement `initial_state` and `step`."""

    input_dim: int
    hidden_dim: int

    @abstractmethod
    def initial_state(self, batch_size: int, *, device=None, dtype=None) -> NamedTuple:
        """Zero state for `batch_size` streams."""

    @abstractmethod
    def step(self, x_t: Tensor, state: NamedTuple) -> tuple[Tensor, NamedTuple]:
        """One time step: x_t (B, E) -> (h_t (B, H), next state)."""

    def forward(self, x: Tensor, state: NamedTuple) -> tuple[Tensor, NamedTuple]:
        outs = []
        for x_t in x.unbind(dim=1):  # x: (B, T, E)
            h_t, state = self.step(x_t, state)
            outs.append(h_t)
        return torch.stack(outs, dim=1), state  # (B, T, H)


def detach_state(state):
    """Cut the graph between BPTT windows (state is a NamedTuple, or a list of them)."""
    if isinstance(state, Tensor):
        return state.detach()
    if isinstance(state, tuple) and hasattr(state, "_fields"):
        return type(state)(*(detach_state(s) for s in state))
    return type(state)(detach_state(s) for s in state)


def select_streams(state, index: slice):
    """The state of a subset of the batch's streams (every state tensor is batch first)."""
    if isinstance(state, Tensor):
        return state[index]
    if isinstance(state, tuple) and hasattr(state, "_fields"):
        return type(state)(*(select_streams(s, index) for s in state))
    return type(state)(select_streams(s, index) for s in state)


def state_dropout_mask(h: Tensor, p: float, training: bool) -> Tensor | None:
    """One variational-dropout mask per stream for h_{t-1}, fixed over a window: (B, H), or None when off."""
    if not training or p == 0.0:
        return None
    return h.new_empty(h.shape).bernoulli_(1.0 - p) / (1.0 - p)  # (B, H)


# Without gradients a window Function with packed products (packed.py) still pays once
# the window repays packing its matrices (~1 ms each): no-grad tokens/s at H 512, B 32,
# window Function vs step loop: T = 4 16.6k vs 17.4k (multiplicative), 14.0k vs 14.3k
# (mogrifier); T = 16 23.8k vs 19.1k and 18.4k vs 14.5k. (sLSTM's Function has no packed
# products: 23.4k vs 22.2k at T = 128 did not justify its buffers.)
WINDOW_FUNCTION_MIN_STEPS = 8


def window_function_applies(cell: nn.Module, x: Tensor, state: NamedTuple) -> bool:
    """Whether `cell` should run its window as its hand-written autograd Function.

    With gradients it always should. Without them (inference, evaluation) a cell
    whose Function multiplies through packed products (`cell.packed_products`) runs
    it for windows of WINDOW_FUNCTION_MIN_STEPS steps or more with the rows x steps
    to pack for (packed.MIN_PACKED_ROW_STEPS), where packing applies (float32 CPU);
    it then keeps no per-window buffers. Shorter windows (sampling's T = 1) take the
    step loop. The Function's buffers hold one dtype, so autocast's mixed dtypes take
    the loop too. `cell.window_function = False` forces the loop, the reference the
    Function is tested against.
    """
    if not cell.window_function or torch.is_autocast_enabled(x.device.type):
        return False
    if torch.is_grad_enabled() and any(t.requires_grad for t in (x, *state, *cell.parameters())):
        return True
    batch, steps = x.shape[:2]
    return (
        getattr(cell, "packed_products", False)
        and packing_applies(x)
        and steps >= WINDOW_FUNCTION_MIN_STEPS
        and batch * steps >= MIN_PACKED_ROW_STEPS
    )
