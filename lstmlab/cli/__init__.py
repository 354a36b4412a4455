"""The Typer command-line interface: one thin module per command.

`main` is the console entry point. It imports the app (and with it torch) inside
its own guard, so a Ctrl-C that arrives while the command is still importing ends
in one line and exit code 130 instead of a traceback.
"""

from __future__ import annotations

import os
import sys


def main() -> None:
    try:
        from lstmlab.cli.app import app

        app()
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted before the command finished\n")
        sys.stderr.write("hint: nothing was left half-written; run the command again\n")
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)  # not SystemExit: the interpreter would report the interrupt itself
