"""Option types and settings shared by several commands.

Help conventions, used by every command: metavars are TEXT, INTEGER, FLOAT, PATH,
DIR, FILE, or the choices in brackets ([best|last|PATH]); an on/off flag takes
`metavar=FLAG` (no type shown, Typer would print <bool>); a default that is not a
literal value is written with `show_default="..."` (shown as `[default: ...]`),
never as "(default: ...)" inside the help text; `-h` is `--help`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

# `-h` as an alias of `--help`: given to the root Typer app, Click passes it down to
# every command's context.
CONTEXT_SETTINGS: dict[str, Any] = {"help_option_names": ["-h", "--help"]}

FLAG = ""  # the metavar of a boolean flag: nothing after --flag / --no-flag

SetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        "-s",
        help="Override a recipe field, e.g. --set train.optimizer.lr=3e-4 (repeatable).",
        metavar="KEY=VALUE",
        show_default=False,
    ),
]
DeviceOpt = Annotated[
    str,
    typer.Option(
        help="auto picks CUDA, then MPS, then the CPU; cuda:N picks a GPU.",
        metavar="[auto|cpu|cuda|cuda:N]",
    ),
]
RunArg = Annotated[
    Path,
    typer.Argument(
        help="A run folder (runs/<run>), `latest` (the newest under runs/) or a .pt file.",
        metavar="RUN",
        show_default=False,
    ),
]
CheckpointOpt = Annotated[
    str,
    typer.Option(
        help="Which checkpoint of a run folder: best, last, or the path of a .pt file.",
        metavar="[best|last|PATH]",
    ),
]
DataDirOpt = Annotated[
    Path | None,
    typer.Option(
        help="Root of prepared corpora; commands reading a run default to the run's corpus.",
        metavar="DIR",
        show_default="$LSTMLAB_DATA_DIR, else ./data",
    ),
]
