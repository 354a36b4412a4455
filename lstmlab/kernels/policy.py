"""When a hand-written window Function runs instead of the reference step loop.

With gradients it always should: that is what it was written for (one autograd
node per window, weight gradients as one product over all T·B rows). Without
them (inference, evaluation) its only gain is the packed products, which repay
packing the window's matrices only over enough steps; the crossover is measured
by benchmarks/fusion.py and recorded in docs/performance.md.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from lstmlab.kernels import packed

# Without gradients a window Function with packed products runs for windows this long or
# longer: shorter ones (sampling's T = 1) do not repay packing the matrices once per window.
WINDOW_FUNCTION_MIN_STEPS = 8


def function_applies(
    cell: nn.Module, x: Tensor, state: NamedTuple, *, packed_products: bool
) -> bool:
    """Whether `cell` should run its window (x (B, T, ·)) as its hand-written autograd Function.

    With gradients it always should. Without them, a Function that multiplies through
    packed products runs for windows of WINDOW_FUNCTION_MIN_STEPS steps or more with the
    rows x steps to pack for (packed.MIN_PACKED_ROW_STEPS), where packing applies
    (float32 CPU); it then keeps no per-window buffers. Shorter windows take the step
    loop. The Function's buffers hold one dtype, so autocast's mixed dtypes take the
    loop too.
    """
    if torch.is_autocast_enabled(x.device.type):
        return False
    if torch.is_grad_enabled() and any(t.requires_grad for t in (x, *state, *cell.parameters())):
        return True
    batch, steps = x.shape[:2]
    return (
        packed_products
        and packed.packing_applies(x)
        and steps >= WINDOW_FUNCTION_MIN_STEPS
        and batch * steps >= packed.MIN_PACKED_ROW_STEPS
    )
