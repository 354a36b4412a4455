"""The cell zoo: one module per cell, and the registry (`registry.py`) from recipe kind to cell.

"mLSTM" names two different cells in the literature: `mlstm` is always xLSTM's
matrix-memory LSTM and Krause et al.'s multiplicative LSTM is `multiplicative`.

Names are imported on first use: `lstmlab.cells.configs` (the recipe schema's cell
configs) must stay importable without torch, which every cell module needs.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "CELLS": "lstmlab.cells.registry",
    "CellSpec": "lstmlab.cells.registry",
    "build_layer": "lstmlab.cells.registry",
    "RecurrentCell": "lstmlab.cells.base",
    "detach_state": "lstmlab.cells.base",
    "restart_streams": "lstmlab.cells.base",
    "select_streams": "lstmlab.cells.base",
}


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'lstmlab.cells' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = list(_EXPORTS)
