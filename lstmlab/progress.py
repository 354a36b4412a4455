"""Progress reporting without printing: library code reports, the CLI renders.

Long work (downloads, tokenising, training, evaluation) takes a `Progress`
and calls `progress.task(description, total)` for a handle with
`advance(n)` / `update(**fields)`. The default `NullProgress` does nothing,
so notebooks and tests stay quiet; the CLI passes a rich-backed one.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Protocol


class Task(Protocol):
    def advance(self, amount: float = 1) -> None: ...
    def update(self, **fields) -> None: ...


class Progress(Protocol):
    def task(
        self, description: str, total: float | None = None, *, unit: str = ""
    ) -> AbstractContextManager[Task]: ...


class _NullTask:
    def advance(self, amount: float = 1) -> None:
        pass

    def update(self, **fields) -> None:
        pass

    def __enter__(self) -> _NullTask:
        return self

    def __exit__(self, *exc) -> None:
        return None


class NullProgress:
    """Reports nowhere."""

    def task(self, description: str, total: float | None = None, *, unit: str = "") -> _NullTask:
        return _NullTask()
