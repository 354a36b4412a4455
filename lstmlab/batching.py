"""Contiguous streams -> (batch, bptt) windows, for training and evaluation.

A split of N tokens makes N − 1 (input, target) pairs. They are cut into B
contiguous streams of L = (N − 1) // B pairs, one per batch row, and read
window by window so the recurrent state can be carried from one window to the
next (truncated BPTT). Evaluation also scores the (N − 1) − B·L pairs left at
the end, continuing the last stream's state, so every token after the first
is predicted exactly once.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from lstmlab.errors import CorpusError


def _as_tensor(a: np.ndarray) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64))


@dataclass(frozen=True)
class Streams:
    """B contiguous streams over a token array: inputs[b, j] predicts targets[b, j]."""

    tokens: np.ndarray
    batch_size: int

    def __post_init__(self) -> None:
        if self.length < 1:
            raise CorpusError(
                f"a split of {len(self.tokens)} tokens is too short for {self.batch_size} streams",
                hint="use a smaller batch_size or a larger corpus",
            )

    @property
    def length(self) -> int:
        """L: pairs per stream."""
        return (len(self.tokens) - 1) // self.batch_size

    def window(self, start: int, size: int) -> tuple[Tensor, Tensor]:
        """Inputs and targets (B, size') for stream positions [start, start + size), clipped at L."""
        end = min(start + size, self.length)
        L = self.length
        body = self.tokens[: self.batch_size * L + 1]
        x = np.stack([body[b * L + start : b * L + end] for b in range(self.batch_size)])  # (B, T)
        y = np.stack([body[b * L + start + 1 : b * L + end + 1] for b in range(self.batch_size)])
        return _as_tensor(x), _as_tensor(y)

    def remainder(self) -> tuple[Tensor, Tensor] | None:
        """The pairs after the last full stream, as a (1, R) window continuing stream B − 1."""
        start = self.batch_size * self.length
        if start >= len(self.tokens) - 1:
            return None
        return _as_tensor(self.tokens[start:-1])[None], _as_tensor(self.tokens[start + 1 :])[None]


def eval_windows(
    tokens: np.ndarray, batch_size: int, bptt: int
) -> Iterator[tuple[Tensor, Tensor, bool]]:
    """Every pair of a split once: (x, y, is_remainder) windows in order.

    The batch shrinks when the split is shorter than `batch_size` streams. The
    remainder windows have batch 1 and continue the state of the last stream.
    """
    if len(tokens) < 2:
        raise CorpusError(f"a split of {len(tokens)} token(s) has nothing to predict")
    streams = Streams(tokens, max(1, min(batch_size, len(tokens) - 1)))
    for start in range(0, streams.length, bptt):
        x, y = streams.window(start, bptt)
        yield x, y, False
    rest = streams.remainder()
    if rest is not None:
        rx, ry = rest
        for start in range(0, rx.shape[1], bptt):
            yield rx[:, start : start + bptt], ry[:, start : start + bptt], True
