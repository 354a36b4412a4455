"""Writing files so that a crash never leaves half of one: temp file, flush, rename.

Every file lstmlab writes into a run or corpus folder goes through `atomic_write`:
the bytes land in a temporary sibling, are flushed to disk, get the mode any new
file gets under the umask (mkstemp makes them owner-only; runs and corpora are
shared like any other files), and replace the target in one rename.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO


def current_umask() -> int:
    """The process's umask, read without changing it where /proc allows (threads never see 0)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: Path, write: Callable[[IO], None], *, binary: bool = False) -> Path:
    """Call `write(file)` on a temporary sibling of `path`, then rename it over `path`."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(
            fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})
        ) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: Path, text: str) -> Path:
    """`path` holds `text` (UTF-8) or its old content, never a part of either."""
    return atomic_write(path, lambda f: f.write(text))


def listing(names: list[str], limit: int = 5) -> str:
    """'a, b, c' or 'a, b, c, d, e and 3 more' for a message."""
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


__all__ = ["atomic_write", "atomic_write_text", "current_umask", "listing"]
