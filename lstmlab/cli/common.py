"""What every command shares: the console, rich progress, and turning errors into one line."""

from __future__ import annotations

import functools
import signal
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from typing import NoReturn

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

from lstmlab.cli import leave_interrupted
from lstmlab.errors import LstmlabError

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


def fail(error: LstmlabError, exit_code: int | None = None) -> typer.Exit:
    """Print an LstmlabError as one line (plus its hint) and return the Exit to raise."""
    for line in error.message.splitlines() or [""]:  # one `error:` line per problem
        err_console.print(f"[bold red]error:[/] {escape(line)}", soft_wrap=True)
    if error.hint:
        err_console.print(f"[dim]hint:[/] {escape(error.hint)}", soft_wrap=True)
    return typer.Exit(error.exit_code if exit_code is None else exit_code)


def exit_now(code: int) -> NoReturn:
    """Flush and leave with `code`. After a Ctrl-C the interpreter would otherwise report
    the interrupt itself at exit (status -SIGINT) whatever code the command chose."""
    import os
    import sys

    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


class _CommandInterrupt:
    """The command's SIGINT handler: Python's KeyboardInterrupt, remembered.

    Commands import torch and its kin lazily. A KeyboardInterrupt raised inside an
    import can abort the process from C++ (torch's pybind11 code) or leave a library
    half-imported (numpy then fails with an ImportError or a RecursionError), so a
    Ctrl-C during an import ends the process at once, as one does during start-up,
    after letting go of the run and study locks it holds as an interrupted `fit` would.
    Elsewhere it is the usual KeyboardInterrupt, and remembering that it arrived lets
    `handle_errors` report an error a library made of it as the interrupt it was.
    """

    def __init__(self) -> None:
        self.seen = False

    def __call__(self, signum, frame) -> None:
        self.seen = True
        if _importing(frame):
            import sys

            if (runs := sys.modules.get("lstmlab.runs")) is not None:
                runs.abandon_held()  # as an interrupted `fit` would: no lock left behind
            leave_interrupted(_INTERRUPTED, _INTERRUPTED_HINT)
        raise KeyboardInterrupt


def _importing(frame) -> bool:
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib._bootstrap"):
            return True
        frame = frame.f_back
    return False


_INTERRUPTED = "interrupted by Ctrl-C before the command finished"
_INTERRUPTED_HINT = "files lstmlab writes are replaced atomically; run the command again"


def _interrupted() -> NoReturn:
    fail(LstmlabError(_INTERRUPTED, hint=_INTERRUPTED_HINT))
    exit_now(130)


def handle_errors(fn: Callable) -> Callable:
    """Decorator for commands: LstmlabError, OSError and Ctrl-C become a one-line message and an exit code."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        interrupt = _CommandInterrupt()
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, interrupt)  # the command's own now
        try:
            return fn(*args, **kwargs)
        except KeyboardInterrupt:
            _interrupted()
        except (typer.Exit, typer.Abort, typer.TyperException):
            raise  # the command's own exit, already said
        except Exception as exc:
            if interrupt.seen:  # a Ctrl-C that a library turned into another error
                _interrupted()
            if isinstance(exc, LstmlabError):
                raise fail(exc) from None
            if isinstance(exc, OSError):
                where = f" {exc.filename}" if getattr(exc, "filename", None) else ""
                raise fail(LstmlabError(f"{exc.strerror or exc}:{where}")) from None
            raise

    return wrapper


class RichProgress:
    """`lstmlab.progress.Progress` on stderr: a rich bar in a terminal, plain lines otherwise.

    A log file, a batch scheduler or `| tee` gets one line per `update(info=...)`
    (training calls it at `log_every`) and one line when a task ends, never a bar's
    control codes.
    """

    def __init__(self, console: Console = err_console) -> None:
        self.console = console

    @contextmanager
    def task(self, description: str, total: float | None = None, *, unit: str = ""):
        if not self.console.is_terminal:
            task = _PlainTask(self.console, description, total, unit)
            yield task
            task.finish()
            return
        columns = [TextColumn("[bold]{task.description}"), BarColumn()]
        if unit == "bytes":
            columns += [DownloadColumn(), TransferSpeedColumn()]
        else:
            columns += [MofNCompleteColumn(), TextColumn("{task.fields[info]}")]
        columns += [TimeElapsedColumn(), TimeRemainingColumn()]
        with Progress(*columns, console=self.console, transient=False) as bar:
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


class _PlainTask:
    """A progress task written as plain lines: each `info` update, then a closing line."""

    def __init__(self, console: Console, description: str, total, unit: str) -> None:
        self.console, self.description, self.total, self.unit = console, description, total, unit
        self.completed = 0.0
        self.start = time.perf_counter()

    def advance(self, amount: float = 1) -> None:
        self.completed += amount

    def update(self, **fields) -> None:
        if "total" in fields:
            self.total = fields["total"]
        if "completed" in fields:
            self.completed = fields["completed"]
        info = fields.get("info")
        if info:
            self.console.print(
                f"{self.description} {self._count()}  {info}", markup=False, soft_wrap=True
            )

    def finish(self) -> None:
        seconds = time.perf_counter() - self.start
        self.console.print(
            f"{self.description}: {self._count()} done in {seconds:,.1f} s",
            markup=False,
            soft_wrap=True,
        )

    def _count(self) -> str:
        if self.unit == "bytes":
            return f"{self.completed / 2**20:,.1f} MiB"
        if self.total is None:
            return f"{self.completed:,.0f}"
        return f"{self.completed:,.0f}/{self.total:,.0f}"


def print_table(table, out: Console | None = None) -> None:
    """A table whose numbers are never cut: whole when it fits (or when piped to a file or
    another program, which has no width to fit), else one plain `header: value` line per row."""
    from rich.text import Text

    out = out or console
    needed = out.measure(table, options=out.options.update_width(10**5)).maximum
    if needed <= out.width:
        out.print(table)
        return
    if not out.is_terminal:  # rich clips print(width=) to the console's: a wider one prints it
        Console(file=out.file, width=needed, highlight=False, no_color=out.no_color).print(table)
        return
    if table.title:
        out.print(table.title)
    headers = [Text.from_markup(str(c.header)).plain for c in table.columns]
    cells = [[Text.from_markup(str(v)).plain for v in c.cells] for c in table.columns]
    for row in zip(*cells):
        out.print(
            "  ".join(f"{h}: {v}" for h, v in zip(headers, row)), markup=False, soft_wrap=True
        )
    if table.caption:
        out.print(table.caption, markup=False, soft_wrap=True)
