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


def _interrupted_while_starting(signum, frame) -> None:
    sys.stderr.write("error: interrupted before the command started\n")
    sys.stderr.write("hint: nothing was written; run the command again\n")
    sys.stderr.flush()
    os._exit(130)


def main() -> None:
    signal.signal(signal.SIGINT, _interrupted_while_starting)
    from lstmlab.cli.app import app

    app()
