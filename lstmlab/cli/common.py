"""What every command shares: the console, rich progress, and turning errors into one line."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from contextlib import contextmanager

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from lstmlab.errors import LstmlabError

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


def fail(error: LstmlabError, exit_code: int | None = None) -> typer.Exit:
    """Print an LstmlabError as one line (plus its hint) and return the Exit to raise."""
    err_console.print(f"[bold red]error:[/] {escape(error.message)}", soft_wrap=True)
    if error.hint:
        err_console.print(f"[dim]hint:[/] {escape(error.hint)}", soft_wrap=True)
    return typer.Exit(error.exit_code if exit_code is None else exit_code)


def handle_errors(fn: Callable) -> Callable:
    """Decorator for commands: LstmlabError, OSError and Ctrl-C become a one-line message and an exit code."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except LstmlabError as exc:
            raise fail(exc) from None
        except OSError as exc:
            where = f" {exc.filename}" if getattr(exc, "filename", None) else ""
            raise fail(LstmlabError(f"{exc.strerror or exc}:{where}")) from None
        except KeyboardInterrupt:
            error = LstmlabError(
                "interrupted by Ctrl-C before the command finished",
                hint="files lstmlab writes are replaced atomically; run the command again",
            )
            raise fail(error, exit_code=130) from None

    return wrapper


class RichProgress:
    """`lstmlab.progress.Progress` rendered with a rich progress bar on stderr."""

    def __init__(self, console: Console = err_console) -> None:
        self.console = console

    @contextmanager
    def task(self, description: str, total: float | None = None, *, unit: str = ""):
        columns = [TextColumn("[bold]{task.description}"), BarColumn()]
        if unit == "bytes":
            columns += [DownloadColumn(), TransferSpeedColumn()]
        else:
            columns += [MofNCompleteColumn(), TextColumn("{task.fields[info]}")]
        columns += [TimeElapsedColumn(), TimeRemainingColumn()]
        disable = not self.console.is_terminal and "pytest" in sys.modules
        with Progress(*columns, console=self.console, transient=False, disable=disable) as bar:
            task_id = bar.add_task(description, total=total, info="")
            yield _RichTask(bar, task_id)


class _RichTask:
    def __init__(self, bar: Progress, task_id) -> None:
        self.bar = bar
        self.task_id = task_id

    def advance(self, amount: float = 1) -> None:
        self.bar.advance(self.task_id, amount)

    def update(self, **fields) -> None:
        info = fields.pop("info", None)
        if info is not None:
            fields["info"] = info
        self.bar.update(self.task_id, **fields)
