"""The registry of the cell zoo: recipe `kind` -> config, module and paper (explicit, read-only).

"mLSTM" names two different cells in the literature: `mlstm` is always xLSTM's
matrix-memory LSTM and Krause et al.'s multiplicative LSTM is `multiplicative`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from pydantic import BaseModel

from lstmlab.cells.base import RecurrentCell, detach_state, select_streams
from lstmlab.cells.configs import (
    LSTMConfig,
    MLSTMConfig,
    MogrifierConfig,
    MultiplicativeConfig,
    SLSTMConfig,
)
from lstmlab.cells.lstm import LSTMCell
from lstmlab.cells.mlstm import MLSTMCell
from lstmlab.cells.mogrifier import MogrifierCell
from lstmlab.cells.multiplicative import MultiplicativeCell
from lstmlab.cells.slstm import SLSTMCell


@dataclass(frozen=True)
class CellSpec:
    config: type[BaseModel]
    module: type[RecurrentCell]
    paper: str

    @property
    def kind(self) -> str:
        """The registry key: the `kind` of the config (its recipe spelling)."""
        return self.config.model_fields["kind"].default


def _registry(*specs: CellSpec) -> Mapping[str, CellSpec]:
    return MappingProxyType({spec.kind: spec for spec in specs})


# One line per cell. Its config must also be in `configs.CELL_CONFIGS` (which builds the
# recipe union without importing torch); tests/cells/test_registry.py checks both agree.
CELLS: Mapping[str, CellSpec] = _registry(
    CellSpec(LSTMConfig, LSTMCell, "Hochreiter & Schmidhuber 1997; Gers et al. 2000"),
    CellSpec(MogrifierConfig, MogrifierCell, "arXiv:1909.01792"),
    CellSpec(MultiplicativeConfig, MultiplicativeCell, "arXiv:1609.07959"),
    CellSpec(MLSTMConfig, MLSTMCell, "Beck et al. 2024, arXiv:2405.04517"),
    CellSpec(SLSTMConfig, SLSTMCell, "Beck et al. 2024, arXiv:2405.04517"),
)


def build_layer(spec: BaseModel, input_dim: int, *, weight_dropout: float = 0.0) -> RecurrentCell:
    """One recurrent layer from its config (`spec.kind` picks the cell)."""
    return CELLS[spec.kind].module(spec, input_dim, weight_dropout=weight_dropout)


__all__ = ["CELLS", "CellSpec", "RecurrentCell", "build_layer", "detach_state", "select_streams"]
