"""The registry, the config union and the recipe folders agree; every cell honours the contract."""

from __future__ import annotations

import typing

import pytest
import torch

from lstmlab.cells import CELLS, build_layer
from lstmlab.cells.configs import CELL_KINDS, CellConfig


def _union_kinds() -> set[str]:
    union = typing.get_args(CellConfig)[0]
    members = typing.get_args(union) or (union,)
    return {m.model_fields["kind"].default for m in members}


def test_registry_keys_equal_config_union_kinds():
    assert set(CELLS) == _union_kinds() == set(CELL_KINDS)
    for kind, spec in CELLS.items():
        assert spec.config.model_fields["kind"].default == kind
        assert spec.paper


def small_config(kind: str):
    spec = CELLS[kind].config
    return spec(hidden_dim=8)


@pytest.mark.parametrize("kind", sorted(CELLS))
def test_forward_matches_stepping_in_float64(kind):
    torch.manual_seed(0)
    cell = build_layer(small_config(kind), 6).double().eval()
    x = torch.randn(2, 7, 6, dtype=torch.float64)
    s0 = cell.initial_state(2, dtype=torch.float64)
    y_seq, _ = cell(x, s0)
    y_loop, s = [], s0
    for x_t in x.unbind(1):
        y_t, s = cell.step(x_t, s)
        y_loop.append(y_t)
    torch.testing.assert_close(y_seq, torch.stack(y_loop, 1))


@pytest.mark.parametrize("kind", sorted(CELLS))
def test_gradients_reach_every_parameter(kind):
    cell = build_layer(small_config(kind), 6)
    x = torch.randn(2, 5, 6)
    y, s = cell(x, cell.initial_state(2))
    (y.sum() + sum(t.sum() for t in s)).backward()
    for name, p in cell.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


@pytest.mark.parametrize("kind", sorted(CELLS))
def test_state_is_batch_first(kind):
    cell = build_layer(small_config(kind), 6)
    for t in cell.initial_state(3):
        assert t.shape[0] == 3
