"""Equal parameters by construction: the widest hidden size that fits a parameter budget.

As LAMB's `num_params` does for the Mogrifier experiments, a budget (1M, 250k,
24M ...) fixes the total parameter count of the language model for a corpus
vocabulary, and each cell gets the largest hidden width whose model does not
exceed it. The count is exact (the model is built on the meta device, shapes
only) and monotone in the width, so a binary search finds the width; widths a
cell refuses (heads that must divide it, for instance) are skipped downward.
"""

from __future__ import annotations

from pydantic import ValidationError

from lstmlab.config import ModelConfig, parse_count
from lstmlab.errors import ConfigError


def with_hidden_dim(model: ModelConfig, hidden_dim: int) -> ModelConfig:
    """`model` with every layer `hidden_dim` wide (the sLSTM blocks of a mixed stack too)."""
    data = model.model_dump(mode="json")
    data["cell"]["hidden_dim"] = hidden_dim
    if data.get("slstm"):
        data["slstm"]["hidden_dim"] = hidden_dim
    return ModelConfig.model_validate(data)


def count(model: ModelConfig, vocab_size: int) -> int:
    """Exact parameter count of the language model (meta device: no memory)."""
    import torch

    from lstmlab.model import build_model

    with torch.device("meta"):
        return build_model(model, vocab_size).num_parameters()


def fit_hidden_dim(model: ModelConfig, vocab_size: int, budget: int) -> tuple[ModelConfig, int]:
    """The widest `model` within `budget` parameters, and its exact count."""

    def size(width: int) -> int | None:
        try:
            return count(with_hidden_dim(model, width), vocab_size)
        except (ValidationError, ValueError, ConfigError):
            return None  # a width this cell refuses

    low, high = 1, 1
    while (n := size(high)) is None or n <= budget:
        low, high = high, high * 2
        if high > 2**20:
            break
    while high - low > 1:  # widths whose size is unknown count as too large, then are skipped
        mid = (low + high) // 2
        n = size(mid)
        low, high = (mid, high) if n is not None and n <= budget else (low, mid)
    for width in range(low, 0, -1):
        n = size(width)
        if n is not None and n <= budget:
            return with_hidden_dim(model, width), n
    raise ConfigError(
        f"no width of {model.cell.kind} fits {budget:,} parameters with vocabulary {vocab_size}",
        hint="raise model.params, or lower model.embed_dim or model.num_layers",
    )


def resolve(model: ModelConfig, vocab_size: int) -> ModelConfig:
    """`model` with the width `model.params` gives it for `vocab_size` (unchanged without params).

    A width already written beside `params` (a run's own config.yaml, a copied one) must be
    the one the budget gives: otherwise one of the two settings would be ignored.
    """
    if model.params is None:
        return model
    fitted, _ = fit_hidden_dim(model, vocab_size, model.params)
    written = model.cell.hidden_dim
    if written is not None and written != fitted.cell.hidden_dim:
        raise ConfigError(
            f"model.params {model.params:,} sizes {model.cell.kind} to hidden_dim "
            f"{fitted.cell.hidden_dim} for vocabulary {vocab_size}, but model.cell.hidden_dim "
            f"says {written}",
            hint="drop one of them: --set model.cell.hidden_dim=null keeps the budget, "
            "--set model.params=null keeps the width",
        )
    return fitted


__all__ = ["count", "fit_hidden_dim", "parse_count", "resolve", "with_hidden_dim"]
