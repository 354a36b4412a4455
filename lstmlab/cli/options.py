"""Option types shared by several commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

SetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set", "-s", help="Override a recipe field, e.g. --set train.lr=3e-4 (repeatable)."
    ),
]
DeviceOpt = Annotated[
    str, typer.Option(help="auto (CUDA, then MPS, then CPU), cpu, cuda or cuda:N.")
]
RunArg = Annotated[
    Path,
    typer.Argument(help="A run folder (runs/<run>) or a checkpoint .pt file.", show_default=False),
]
CheckpointOpt = Annotated[str, typer.Option(help="Which checkpoint of a run folder: best or last.")]
DataDirOpt = Annotated[
    Path | None, typer.Option(help="Root of prepared corpora (default: the run's, or ./data).")
]
