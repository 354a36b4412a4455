"""Parts shared by xLSTM's residual blocks (Beck et al. 2024, arXiv:2405.04517).

Every block is residual and pre-norm, x <- x + Block(LN(x)); `mlstm.MLSTMCell` and
`slstm.SLSTMCell` are such blocks, so a `LanguageModel` stack of them is an xLSTM
stack (embedding -> blocks -> final LayerNorm -> head; `ModelConfig.final_norm`,
and `ModelConfig.slstm_at` mixes the two kinds). This module holds:

    LayerNorm      weight-only LayerNorm with the weight stored as 1 + w (w = 0 at init)
    HeadwiseNorm   the same per head: normalise each head's DH units separately
    CausalConv     depthwise causal convolution, kernel K, that carries its last K − 1
                   inputs across windows, so two windows equal one long window
    small_init_    N(0, 2 / (5 d)) with d the model width, for input-side maps
    wang_init_     N(0, (2 / (num_blocks √d))²), for each block's down-projection

Shapes: B batch, T window, d model width, D inner width, K conv kernel.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lstmlab.cells.base import RecurrentCell
from lstmlab.errors import ConfigError
from lstmlab.kernels.conv import causal_conv_window


def round_up(x: float, multiple: int = 64) -> int:
    return int(math.ceil(x / multiple) * multiple)


def small_init_(weight: Tensor, model_width: int) -> None:
    nn.init.normal_(weight, 0.0, math.sqrt(2.0 / (5.0 * model_width)))


def wang_init_(weight: Tensor, model_width: int, num_blocks: int) -> None:
    nn.init.normal_(weight, 0.0, 2.0 / (num_blocks * math.sqrt(model_width)))


class LayerNorm(nn.Module):
    """Weight-only LayerNorm over the last axis; effective weight 1 + w, so decay pulls it to 1."""

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(dim))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        return F.layer_norm(x, x.shape[-1:], 1.0 + self.weight, None, self.eps)


class HeadwiseNorm(nn.Module):
    """LayerNorm of each head separately (GroupNorm with NH groups), weight-only, 1 + w."""

    def __init__(self, num_heads: int, head_dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.num_heads, self.head_dim, self.eps = num_heads, head_dim, eps
        self.weight = nn.Parameter(torch.zeros(num_heads * head_dim))

    def forward(self, x: Tensor) -> Tensor:
        """x (..., NH·DH) -> (..., NH·DH)."""
        heads = x.unflatten(-1, (self.num_heads, self.head_dim))  # (..., NH, DH)
        normed = F.layer_norm(heads, (self.head_dim,), None, None, self.eps)
        return normed.flatten(-2) * (1.0 + self.weight)  # (..., NH·DH)


class CausalConv(nn.Module):
    """Depthwise causal 1-d convolution with bias; its state is the last K − 1 inputs."""

    def __init__(self, dim: int, kernel: int) -> None:
        super().__init__()
        self.kernel = kernel
        self.conv = nn.Conv1d(dim, dim, kernel, groups=dim)

    def forward(self, x: Tensor, buffer: Tensor) -> tuple[Tensor, Tensor]:
        """x (B, T, D), buffer (B, K − 1, D) -> (y (B, T, D), new buffer (B, K − 1, D))."""
        full = torch.cat([buffer.to(x.dtype), x], dim=1)  # (B, K − 1 + T, D)
        weight, bias = self.conv.weight.squeeze(1), self.conv.bias  # (D, K), (D,)
        if x.shape[1] == 1:
            # one output per unit (sampling): a weighted sum of the K inputs costs a fraction
            # of a convolution call and its layout copies
            y = (full * weight.t().contiguous()).sum(1, keepdim=True) + bias  # (B, 1, D)
        else:
            y = causal_conv_window(full, weight, bias)  # (B, T, D)
        return y, full[:, full.shape[1] - (self.kernel - 1) :]  # (B, K − 1, D)


class ResidualBlock(RecurrentCell):
    """Base of the xLSTM blocks: the residual stream is `hidden_dim` (d) wide.

    When the layer's input is narrower or wider than d (a first layer whose embedding
    size differs), a bias-free map lifts it onto the stream first. `step` is `forward`
    at T = 1, which each block serves with its recurrent form.
    """

    def __init__(self, input_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.input_dim, self.hidden_dim = input_dim, hidden_dim
        self.in_proj = (
            nn.Linear(input_dim, hidden_dim, bias=False) if input_dim != hidden_dim else None
        )

    def lift(self, x: Tensor) -> Tensor:
        return self.in_proj(x) if self.in_proj is not None else x

    def step(self, x_t: Tensor, state):
        y, state = self(x_t.unsqueeze(1), state)  # (B, E) -> (B, 1, E)
        return y.squeeze(1), state  # (B, d)


def check_heads(kind: str, width: int, num_heads: int, what: str) -> int:
    """Head size, or a ConfigError when `num_heads` does not divide `width`."""
    if width % num_heads:
        raise ConfigError(
            f"{kind}: num_heads {num_heads} does not divide the {what} {width}",
            hint="pick model.cell.num_heads that divides it (e.g. 4)",
        )
    return width // num_heads
