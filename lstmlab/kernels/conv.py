"""The xLSTM blocks' depthwise causal convolution over a window, with its own backward.

`cells.xlstm.CausalConv` holds the parameters and the carried inputs; this is how a
window of more than one step is convolved on CPU and GPU alike. Two layout choices
make it fast: the (B, T, D) activations are convolved where they lie (conv2d over a
channels-last view, no copies in or out as conv1d on the transposed view needs), and
the backward is written out, because mkldnn's depthwise weight gradient is many times
slower than the forward (`lstmlab bench` times the xLSTM blocks).

Shapes: B batch, T window, D channels, K kernel.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def conv_over_time(
    x: Tensor, weight: Tensor, bias: Tensor | None = None, padding: int = 0
) -> Tensor:
    """Depthwise convolution along T: x (B, T, D), weight (D, K) -> (B, T + 2·padding − K + 1, D).

    conv2d over (B, D, 1, T) viewed channels-last reads and writes the (B, T, D) layout
    as it lies; conv1d on the transposed view would copy in and out.
    """
    y = F.conv2d(
        x.transpose(1, 2).unsqueeze(2),  # (B, D, 1, T) channels-last
        weight[:, None, None, :],  # (D, 1, 1, K)
        bias,
        padding=(0, padding),
        groups=weight.shape[0],
    )
    return y.squeeze(2).transpose(1, 2)  # (B, D, 1, T') channels-last -> (B, T', D) contiguous


class _ConvOverTime(torch.autograd.Function):
    """`conv_over_time` with its own backward: the input gradient is the same convolution of
    the output gradient with the kernel flipped, the weight gradient K products summed over
    (B, T); mkldnn's own depthwise weight gradient is far slower than either."""

    @staticmethod
    def forward(ctx, full: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
        ctx.save_for_backward(full, weight)
        return conv_over_time(full, weight, bias)  # (B, T, D) from (B, T + K − 1, D)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
        full, weight = ctx.saved_tensors
        K, T = weight.shape[1], grad.shape[1]
        d_full = d_weight = d_bias = None
        if ctx.needs_input_grad[0]:
            # input s feeds outputs s − K + 1 … s: pad the gradient by K − 1 on both sides
            d_full = conv_over_time(grad, weight.flip(-1), padding=K - 1)  # (B, T + K − 1, D)
        if ctx.needs_input_grad[1]:
            taps = [(grad * full[:, k : k + T]).sum((0, 1)) for k in range(K)]  # K × (D,)
            d_weight = torch.stack(taps, dim=-1)  # (D, K)
        if ctx.needs_input_grad[2]:
            d_bias = grad.sum((0, 1))  # (D,)
        return d_full, d_weight, d_bias


def causal_conv_window(full: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """full (B, K − 1 + T, D): the carried inputs then the window; weight (D, K), bias (D,)
    -> (B, T, D), in the dtype a convolution runs in under autocast."""
    # chosen here because the Function's backward runs outside autocast
    device = full.device.type
    dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else full.dtype
    return _ConvOverTime.apply(full.to(dtype), weight.to(dtype), bias.to(dtype))
