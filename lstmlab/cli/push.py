"""`lstmlab push`: publish a run's export to the Hugging Face Hub."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lstmlab.cli.common import console, handle_errors
from lstmlab.cli.options import CheckpointOpt


@handle_errors
def push_cmd(
    run: Annotated[
        Path,
        typer.Argument(
            help="A run folder (runs/<run>) or a checkpoint .pt file.", show_default=False
        ),
    ],
    repo_id: Annotated[str, typer.Argument(help="The model repo, USER/REPO.", show_default=False)],
    checkpoint: CheckpointOpt = "best",
    private: Annotated[
        bool, typer.Option("--private", help="Create the repo private (when it does not exist).")
    ] = False,
    token: Annotated[
        str | None,
        typer.Option(help="Hub token with write access (default: HF_TOKEN or `hf auth login`)."),
    ] = None,
) -> None:
    """Export a run and upload it to a Hugging Face model repo; load it back with hf://USER/REPO."""
    from lstmlab.hub import push_run
    from lstmlab.runs import resolve_run

    url = push_run(resolve_run(run), repo_id, private=private, checkpoint=checkpoint, token=token)
    console.print(
        f"pushed to {url} (load it with lstmlab.load('hf://{url.split('huggingface.co/')[-1]}'))",
        markup=False,
    )
