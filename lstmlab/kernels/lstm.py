"""The `lstm` cell's window through torch's fused multi-step LSTM kernel (cuDNN, oneDNN).

The capped input gate, which no fused kernel offers, runs the cell's step loop.
So does CPU autocast where oneDNN has no reduced-precision LSTM: on CPUs without
native bfloat16 (no AVX-512 BF16 or AMX) its RNN primitive cannot be created and
torch.lstm raises, while the step loop's products and pointwise ops autocast as
usual. Which case holds is probed once per dtype by running a tiny torch.lstm.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor


def fused_lstm_applies(x: Tensor) -> bool:
    """Whether torch.lstm can run a window like x here (always, except on a CPU under an
    autocast whose reduced-precision LSTM oneDNN cannot build)."""
    if x.device.type != "cpu" or not torch.is_autocast_enabled("cpu"):
        return True
    return fused_lstm_runs_under_cpu_autocast(torch.get_autocast_dtype("cpu"))


@functools.cache
@torch.compiler.disable
def fused_lstm_runs_under_cpu_autocast(dtype: torch.dtype) -> bool:
    """Whether torch.lstm runs under CPU autocast to `dtype` on this machine (probed once)."""
    x = torch.zeros(1, 1, 4)  # (B, T, H)
    h = torch.zeros(1, 1, 4)  # (layers, B, H)
    weight, bias = torch.zeros(16, 4), torch.zeros(16)
    try:
        with torch.no_grad(), torch.autocast("cpu", dtype=dtype):
            torch.lstm(x, (h, h), [weight, weight, bias, bias], True, 1, 0.0, False, False, True)
    except RuntimeError:  # "could not create a primitive descriptor for the LSTM ..."
        return False
    return True


def lstm_kernel(cell, x: Tensor, state, weight_hh: Tensor):
    """(y (B, T, H), state) of `LSTMCell` over x (B, T, E) with the window's W_hh, or None
    where the fused kernel does not apply."""
    if cell.config.capped_input_gate or not fused_lstm_applies(x):
        return None
    # torch's fused multi-step kernel; hx is (num_layers=1, B, H).
    y, h, c = torch.lstm(
        x,
        (state.h.unsqueeze(0), state.c.unsqueeze(0)),
        [cell.weight_ih, weight_hh, cell.bias_ih, cell.bias_hh],
        True,  # has biases
        1,  # num_layers
        0.0,  # dropout between layers (ours is applied outside)
        cell.training,
        False,  # bidirectional
        True,  # batch_first
    )
    return y, type(state)(h.squeeze(0), c.squeeze(0))
