"""The registry, the config union and the recipe folders agree; every cell honours the contract."""

from __future__ import annotations

import typing
from pathlib import Path

import pytest
import torch

from lstmlab.cells import CELLS, build_layer
from lstmlab.cells.configs import CELL_CONFIGS, CELL_KINDS, CellConfig

from support import REPO


def _union_kinds() -> set[str]:
    union = typing.get_args(CellConfig)[0]
    members = typing.get_args(union) or (union,)
    return {m.model_fields["kind"].default for m in members}


def test_registry_keys_equal_config_union_kinds():
    assert set(CELLS) == _union_kinds() == set(CELL_KINDS)
    for kind, spec in CELLS.items():
        assert spec.config.model_fields["kind"].default == kind == spec.kind
        assert spec.paper


def test_one_list_of_cell_configs_feeds_union_kinds_and_registry():
    """Adding a cell: its module, its config (in CELL_CONFIGS) and one CELLS line."""
    union = typing.get_args(typing.get_args(CellConfig)[0])
    assert union == CELL_CONFIGS
    assert tuple(spec.config for spec in CELLS.values()) == CELL_CONFIGS
    assert tuple(CELLS) == CELL_KINDS
    assert {p.stem for p in (REPO / "recipes" / "tiny").glob("*.yaml")} == set(CELL_KINDS)


def test_cell_configs_need_no_network_code():
    """configs.py imports neither torch nor a cell module: the registry imports it, not back."""
    import ast

    from lstmlab.cells import configs

    tree = ast.parse(Path(configs.__file__).read_text(encoding="utf-8"))
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not {m for m in imported if m and (m.startswith("torch") or m.startswith("lstmlab"))}


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
