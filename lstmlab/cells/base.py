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
from typing import Any, ClassVar, NamedTuple

import torch
from torch import Tensor, nn

from lstmlab import kernels


class RecurrentCell(nn.Module, ABC):
    """Base class: subclasses set `input_dim`, `hidden_dim` and implement `initial_state` and `step`.

    A subclass with a fast path for whole windows names it in `window_kernel` (a key
    of `lstmlab.kernels.WINDOW_KERNELS`); `forward` runs it where it applies and the
    reference loop everywhere else. The kernel never changes the parameters.
    """

    input_dim: int
    hidden_dim: int
    window_kernel: ClassVar[str | None] = None

    @abstractmethod
    def initial_state(self, batch_size: int, *, device=None, dtype=None) -> NamedTuple:
        """Zero state for `batch_size` streams."""

    @abstractmethod
    def step(self, x_t: Tensor, state: NamedTuple) -> tuple[Tensor, NamedTuple]:
        """One time step: x_t (B, E) -> (h_t (B, H), next state)."""

    def init_for_stack(self, index: int, num_blocks: int) -> None:
        """Re-initialise what depends on the layer's place in a stack of `num_blocks`
        (xLSTM blocks scale by depth; other cells do not)."""

    def window_constants(self, state: NamedTuple) -> Any:
        """What every step of one window shares, drawn once per window (DropConnected or
        weight-normalised matrices, dropout masks); the kernel and the reference take it."""
        return None

    def forward(self, x: Tensor, state: NamedTuple) -> tuple[Tensor, NamedTuple]:
        """x (B, T, E) -> (y (B, T, H), state after the window)."""
        return self.run_window(x, state, self.window_constants(state))

    def run_window(self, x: Tensor, state: NamedTuple, constants: Any):
        """The window kernel's output where it applies, else `reference_window`'s."""
        out = kernels.window(self, x, state, constants)
        return out if out is not None else self.reference_window(x, state, constants)

    def reference_window(self, x: Tensor, state: NamedTuple, constants: Any):
        """The reference every kernel is tested against: `step` at every time step."""
        outs = []
        for x_t in x.unbind(dim=1):  # x: (B, T, E)
            h_t, state = self.step(x_t, state)
            outs.append(h_t)
        return torch.stack(outs, dim=1), state  # (B, T, H)


def map_state(fn, state, *others):
    """`fn` applied to each state tensor (with the matching tensors of `others`, states of the
    same structure), keeping the structure: a NamedTuple, or a list of them."""
    if isinstance(state, Tensor):
        return fn(state, *others)
    parts = (map_state(fn, *group) for group in zip(state, *others, strict=True))
    if isinstance(state, tuple) and hasattr(state, "_fields"):
        return type(state)(*parts)
    return type(state)(parts)


def detach_state(state):
    """Cut the graph between BPTT windows (state is a NamedTuple, or a list of them)."""
    return map_state(Tensor.detach, state)


def select_streams(state, index: slice):
    """The state of a subset of the batch's streams (every state tensor is batch first)."""
    return map_state(lambda t: t[index], state)


def restart_streams(state, initial, keep: Tensor):
    """The state of the streams where `keep` (B,) is true, the initial state elsewhere."""
    return map_state(
        lambda s, i: torch.where(keep.view(-1, *(1,) * (s.dim() - 1)), s, i), state, initial
    )


def state_dropout_mask(h: Tensor, p: float, training: bool) -> Tensor | None:
    """One variational-dropout mask per stream for h_{t-1}, fixed over a window: (B, H), or None when off."""
    if not training or p == 0.0:
        return None
    return h.new_empty(h.shape).bernoulli_(1.0 - p) / (1.0 - p)  # (B, H)
