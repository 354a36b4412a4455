"""`lstmlab export`: a self-contained model folder (safetensors, recipe, tokenizer, model card)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lstmlab.cli.common import console, handle_errors
from lstmlab.cli.options import CheckpointOpt


@handle_errors
def export_cmd(
    run: Annotated[
        Path,
        typer.Argument(
            help="A run folder (runs/<run>) or a checkpoint .pt file.", show_default=False
        ),
    ],
    out: Annotated[
        Path, typer.Argument(help="The folder to write (new or empty).", show_default=False)
    ],
    checkpoint: CheckpointOpt = "best",
    force: Annotated[
        bool, typer.Option("--force", help="Replace OUT if it holds an earlier lstmlab export.")
    ] = False,
) -> None:
    """Export a trained run as a folder that loads without lstmlab's run layout or corpus."""
    from lstmlab.portable import export_run
    from lstmlab.runs import resolve_run

    folder = export_run(resolve_run(run), out, checkpoint=checkpoint, force=force)
    console.print(f"wrote {folder} (load it with lstmlab.load({str(folder)!r}))", markup=False)
