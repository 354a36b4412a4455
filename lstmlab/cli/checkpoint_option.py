"""`--checkpoint best|last|PATH` for the commands that load a trained model (eval, sample)."""

from __future__ import annotations

from typing import Annotated

import typer

from lstmlab.cli.common import fail
from lstmlab.errors import UsageError


def checkpoint_choice(value: str) -> str:
    """best, last, or something that names a file: a path with a folder part, or a *.pt name.

    A typo such as `bset` is refused while parsing, with the error format of
    every other command, instead of being looked for as a file.
    """
    if value in ("best", "last") or "/" in value or "\\" in value or value.endswith(".pt"):
        return value
    raise fail(
        UsageError(
            f"--checkpoint must be best, last or the path of a .pt file, got {value!r}",
            hint="e.g. --checkpoint last, or --checkpoint runs/x/checkpoints/best.pt",
        )
    )


CheckpointChoiceOpt = Annotated[
    str,
    typer.Option(
        "--checkpoint",
        metavar="[best|last|PATH]",
        callback=checkpoint_choice,
        help="Which checkpoint of a run folder: best, last, or a .pt file.",
    ),
]
