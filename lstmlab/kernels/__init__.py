"""Fast paths for whole windows, kept apart from the cells' readable maths.

A cell class names its window kernel once (`RecurrentCell.window_kernel`); its
`forward` asks `window` for it and runs its own reference loop when the answer is
None. A kernel is a function `(cell, x, state, constants) -> output | None` that
reads the cell's parameters and the window's `constants` (what every step of the
window shares, e.g. DropConnected weights, drawn once by the cell) and returns
exactly what the cell's `reference_window` would, or None where it does not apply
(a dtype, a device, a window too short to repay it). A kernel never changes the
parameter layout: a checkpoint loads whatever backend runs it.

    lstm            torch's fused multi-step LSTM (cuDNN, oneDNN)            lstm.py
    mogrifier       the Mogrifier window as one autograd Function            mogrifier.py
    multiplicative  the multiplicative-LSTM window as one autograd Function  multiplicative.py
    slstm           the sLSTM recurrence as one autograd Function            slstm.py
    mlstm           the mLSTM block with folded gates and fused projections  mlstm.py

Shared parts: `lstm_update` (the LSTM update inside the Functions and its backward),
`packed` (oneDNN products on matrices packed once per window), `conv` (the depthwise
causal convolution with its own backward) and `policy` (when a Function pays).
`reference_only()` makes every cell run its reference path, the one the kernels are
tested against.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import MappingProxyType

from lstmlab.kernels.lstm import lstm_kernel
from lstmlab.kernels.mlstm import mlstm_kernel
from lstmlab.kernels.mogrifier import mogrifier_kernel
from lstmlab.kernels.multiplicative import multiplicative_kernel
from lstmlab.kernels.slstm import slstm_kernel

WINDOW_KERNELS: MappingProxyType[str, Callable] = MappingProxyType(
    {
        "lstm": lstm_kernel,
        "mogrifier": mogrifier_kernel,
        "multiplicative": multiplicative_kernel,
        "slstm": slstm_kernel,
        "mlstm": mlstm_kernel,
    }
)

# Depth of the `reference_only` blocks now open (0: kernels run where they apply).
_reference_only_depth = 0


@contextmanager
def reference_only() -> Iterator[None]:
    """Inside the block every cell runs its reference path (the tests' yardstick)."""
    global _reference_only_depth
    _reference_only_depth += 1
    try:
        yield
    finally:
        _reference_only_depth -= 1


def reference_forced() -> bool:
    """Whether a `reference_only()` block is open."""
    return _reference_only_depth > 0


def window(cell, x, state, constants=None):
    """The output of `cell`'s window kernel on (x, state), or None when the reference should run."""
    name = type(cell).window_kernel
    if name is None or _reference_only_depth:
        return None
    return WINDOW_KERNELS[name](cell, x, state, constants)


__all__ = ["WINDOW_KERNELS", "reference_forced", "reference_only", "window"]
