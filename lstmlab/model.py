"""`LanguageModel`: embedding -> stacked recurrent layers -> output projection.

The dropouts are AWD-LSTM's (Merity et al. 2018, arXiv:1708.02182):
embedding dropout removes whole rows of the embedding matrix; locked
(variational) dropout uses one mask per window and stream on the first layer's
input, between layers, and on the last layer's output (`dropout.mask: step`
draws a fresh mask at every step instead, as LAMB does); DropConnect on each
cell's recurrent matrix is the cell's `weight_dropout`. With `tie_weights`
the softmax shares the embedding matrix and the last layer is `embed_dim`
wide, as in AWD-LSTM's 200-1000-1000-200 stack. With `output_from: sum` the
softmax reads the sum of every layer's (dropped-out) output, as the official
Mogrifier code does (Melis et al. 2020, arXiv:1909.01792).

Shapes: B batch, T window, E embed_dim, H hidden size, V vocabulary.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lstmlab.cells import build_layer
from lstmlab.cells.xlstm import LayerNorm
from lstmlab.config import EmbedInitConfig, ModelConfig

# Standard deviation of N(0, 1) truncated to [−2, 2] (the constant TF's variance_scaling uses).
TRUNCATED_STD = 0.87962566103423978


def locked_dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """Dropout with one mask per stream, shared over the window: x (B, T, E)."""
    if not training or p == 0.0:
        return x
    mask = x.new_empty(x.shape[0], 1, x.shape[2]).bernoulli_(1.0 - p) / (1.0 - p)  # (B, 1, E)
    return x * mask


def embedding_dropout(weight: Tensor, p: float, training: bool) -> Tensor:
    """Drop whole rows (symbols) of the embedding matrix, rescaling the rest: (V, E)."""
    if not training or p == 0.0:
        return weight
    mask = weight.new_empty(weight.shape[0], 1).bernoulli_(1.0 - p) / (1.0 - p)  # (V, 1)
    return weight * mask


class LastLayer(NamedTuple):
    """The last layer's output over a window, before and after its dropout: (B, T, H) each."""

    raw: Tensor
    dropped: Tensor


def init_embedding(weight: Tensor, init: EmbedInitConfig) -> None:
    """Draw the (V, E) embedding matrix in place as `init` says."""
    with torch.no_grad():
        if init.dist == "uniform":
            nn.init.uniform_(weight, -init.scale, init.scale)
        elif init.dist == "normal":
            nn.init.normal_(weight, 0.0, init.scale)
        else:
            # A normal cut at ±2σ has standard deviation 0.8796σ: widen σ so the result has `scale`.
            std = init.scale / TRUNCATED_STD
            nn.init.trunc_normal_(weight, 0.0, std, -2.0 * std, 2.0 * std)


def layer_sizes(cfg: ModelConfig) -> list[tuple[int, int]]:
    """(input, hidden) size of each layer."""
    sizes, inp = [], cfg.embed_dim
    for index in range(cfg.num_layers):
        last = index == cfg.num_layers - 1
        hidden = cfg.embed_dim if (last and cfg.tie_weights) else cfg.cell.hidden_dim
        sizes.append((inp, hidden))
        inp = hidden
    return sizes


class LanguageModel(nn.Module):
    """Next-symbol model over a vocabulary of `vocab_size` ids."""

    def __init__(self, cfg: ModelConfig, vocab_size: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.vocab_size = vocab_size
        self.embedding = nn.Embedding(vocab_size, cfg.embed_dim)
        layers = []
        for index, (inp, hidden) in enumerate(layer_sizes(cfg)):
            spec = cfg.layer_config(index)
            if hidden != spec.hidden_dim:
                spec = spec.model_copy(update={"hidden_dim": hidden})
            layers.append(build_layer(spec, inp, weight_dropout=cfg.dropout.weight))
        for index, layer in enumerate(layers):
            layer.init_for_stack(index, len(layers))  # xLSTM blocks: init depends on depth
        self.layers = nn.ModuleList(layers)
        self.final_norm = LayerNorm(layers[-1].hidden_dim) if cfg.final_norm else None
        self.head = nn.Linear(layers[-1].hidden_dim, vocab_size)
        init_embedding(self.embedding.weight, cfg.embed_init)
        nn.init.zeros_(self.head.bias)
        if cfg.tie_weights:
            self.head.weight = self.embedding.weight

    def initial_state(self, batch_size: int, device=None, dtype=torch.float32) -> list:
        return [
            layer.initial_state(batch_size, device=device, dtype=dtype) for layer in self.layers
        ]

    def forward(self, ids: Tensor, state: list, *, return_last: bool = False):
        """ids (B, T) -> logits (B, T, V), next state.

        With `return_last` a third value follows: `LastLayer(raw, dropped)`, the last
        layer's output (B, T, H) before and after its dropout, which AWD-LSTM's activation
        penalties read (AWD's `return_h`). It costs nothing: both tensors exist anyway.
        """
        drop = self.cfg.dropout
        dropout = locked_dropout if drop.mask == "window" else F.dropout
        weight = embedding_dropout(self.embedding.weight, drop.embedding, self.training)
        x = dropout(F.embedding(ids, weight), drop.input, self.training)  # (B, T, E)
        new_state, total, raw = [], 0.0, x
        for index, (layer, layer_state) in enumerate(zip(self.layers, state)):
            raw, s = layer(x, layer_state)  # (B, T, H)
            new_state.append(s)
            p = drop.output if index == len(self.layers) - 1 else drop.hidden
            x = dropout(raw, p, self.training)
            if self.cfg.output_from == "sum":
                total = total + x  # each layer's output after its own dropout
        out = x if self.cfg.output_from == "last" else total
        if self.final_norm is not None:
            out = self.final_norm(out)
        if return_last:
            return self.head(out), new_state, LastLayer(raw, x)  # (B, T, V)
        return self.head(out), new_state  # (B, T, V)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())  # tied weights counted once


def build_model(cfg: ModelConfig, vocab_size: int) -> LanguageModel:
    """The model of `cfg`; a `model.params` budget is sized for `vocab_size` first."""
    if not cfg.sized:
        from lstmlab.sizing import resolve

        cfg = resolve(cfg, vocab_size)
    return LanguageModel(cfg, vocab_size)
