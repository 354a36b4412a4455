"""The Typer command-line interface: one thin module per command.

`main` is the console entry point. Until a command starts running, Ctrl-C ends
the process at once with one line and exit code 130: the imports and Typer's
own argument parsing would otherwise turn it into a traceback or a silent exit.
The command itself (`common.handle_errors`) gets Python's usual KeyboardInterrupt
back, so training can save and eval can stop cleanly.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import NoReturn


def leave_interrupted(error: str, hint: str) -> NoReturn:
    """Say `error` and `hint` as plain lines and end the process at once with 130 (safe inside
    a signal handler: nothing is imported and no exception unwinds through library code)."""
    sys.stdout.flush()
    sys.stderr.write(f"error: {error}\nhint: {hint}\n")
    sys.stderr.flush()
    os._exit(130)


def _interrupted_while_starting(signum, frame) -> None:
    leave_interrupted(
        "interrupted before the command started", "nothing was written; run the command again"
    )


def main() -> None:
    signal.signal(signal.SIGINT, _interrupted_while_starting)
    from lstmlab.cli.app import app

    app()
