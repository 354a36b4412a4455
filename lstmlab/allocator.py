"""Keep freed tensor memory inside the process (glibc Linux), so large tensors stop page-faulting.

glibc serves every allocation above its mmap threshold (at most 32 MiB) with fresh
pages from the kernel and hands them back on free, and trims the heap's free top
the same way. A training step allocates such tensors by the dozen — activations
and their gradients at long windows, the mLSTM's matrix memory — so every step
pays to fault in and zero those pages again; raising the two thresholds below
removes that cost (`lstmlab bench` at long windows shows it; docs/performance.md
records the measurement).

The cost is that the process's resident memory stays at its high-water mark
instead of shrinking between steps — the right trade for a command that trains,
evaluates or samples and then exits. The CLI applies it at start; the library
does not (a program that imports lstmlab keeps its own allocator settings).
`LSTMLAB_KEEP_FREED_MEMORY=0` turns it off.
"""

from __future__ import annotations

import ctypes
import os
import sys

ENV = "LSTMLAB_KEEP_FREED_MEMORY"
M_TRIM_THRESHOLD = -1  # mallopt parameter numbers from glibc's malloc.h
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 2**30  # requests below 1 GiB come from the heap, and stay there when freed
TRIM_THRESHOLD = 2**31 - 1  # never give the heap's free top back (mallopt takes an int)
_applied = False


def applied() -> bool:
    """Whether this process raised the thresholds (recorded with benchmark results)."""
    return _applied


def keep_freed_memory(loader=ctypes.CDLL) -> bool:
    """Raise glibc's mmap and trim thresholds; True when both took effect.

    Does nothing (False) off Linux, without glibc's `mallopt` (musl, say), or
    when the environment sets LSTMLAB_KEEP_FREED_MEMORY=0.
    """
    if os.environ.get(ENV, "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = loader("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
    if loader is ctypes.CDLL:
        global _applied
        _applied = _applied or ok
    return ok
