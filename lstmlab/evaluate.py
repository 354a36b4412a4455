"""Bits per character and perplexity over a whole split, with the state carried across windows.

bpc = Σ NLL (nats) / (ln 2 · characters predicted), where a token's character
count comes from the tokenizer (1 for char and byte corpora), so subword and
character models compare fairly. Per-character perplexity = 2^bpc.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from lstmlab.batching import eval_windows
from lstmlab.cells import detach_state, select_streams
from lstmlab.progress import NullProgress, Progress


@dataclass(frozen=True)
class EvalResult:
    nats: float
    tokens: int
    chars: int

    @property
    def loss(self) -> float:
        """Mean nats per token."""
        return self.nats / max(self.tokens, 1)

    @property
    def bpc(self) -> float:
        return self.nats / (math.log(2) * max(self.chars, 1))

    @property
    def perplexity(self) -> float:
        """Per-character perplexity."""
        return 2.0**self.bpc

    def to_dict(self) -> dict:
        return {**asdict(self), "loss": self.loss, "bpc": self.bpc, "perplexity": self.perplexity}


def bits_per_char(nats: float, chars: int) -> float:
    return nats / (math.log(2) * chars)


@torch.no_grad()
def evaluate(
    model,
    tokens: np.ndarray,
    *,
    batch_size: int = 16,
    bptt: int = 256,
    char_lengths: np.ndarray | None = None,
    temperature: float = 1.0,
    max_tokens: int | None = None,
    device="cpu",
    progress: Progress | None = None,
    description: str = "evaluate",
) -> EvalResult:
    """Score every token of `tokens` after the first (or of its first `max_tokens` + 1)."""
    was_training = model.training
    model.eval()
    if max_tokens is not None:
        tokens = tokens[: max_tokens + 1]
    lengths = torch.as_tensor(
        char_lengths if char_lengths is not None else np.ones(model.vocab_size), dtype=torch.int64
    )
    total_nats, total_tokens, total_chars = 0.0, 0, 0
    state = None
    progress = progress or NullProgress()
    with progress.task(description, total=len(tokens) - 1) as task:
        for x, y, is_remainder in eval_windows(tokens, batch_size, bptt):
            x, y = x.to(device), y.to(device)
            if state is None:
                state = model.initial_state(x.shape[0], device=device)
            elif is_remainder and _batch_of(state) != 1:
                state = select_streams(state, slice(-1, None))  # continue the last stream
            logits, state = model(x, state)
            state = detach_state(state)
            logits = logits.float()
            if temperature != 1.0:
                logits = logits / temperature
            nll = F.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="sum"
            )
            total_nats += float(nll)
            total_tokens += y.numel()
            total_chars += int(lengths[y.cpu()].sum())
            task.advance(y.numel())
    model.train(was_training)
    return EvalResult(nats=total_nats, tokens=total_tokens, chars=total_chars)


def _batch_of(state) -> int:
    return state[0][0].shape[0]
