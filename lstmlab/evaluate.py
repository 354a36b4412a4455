"""Bits per character and perplexity over a whole split, with the state carried across windows.

bpc = Σ NLL (nats) / (ln 2 · characters predicted), where a token's character
count comes from the tokenizer (1 for char and byte corpora), so subword and
character models compare fairly. Per-character perplexity = 2^bpc.

`tune_temperature` scores the whole validation split at every temperature of a
grid in one pass (the network runs once; only the softmax is repeated), as
the Mogrifier/LAMB evaluation does before reporting test bpc.

Shapes: N tokens in a window (B x T), V vocabulary, K temperatures.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch

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


# LAMB/Mogrifier search the eval softmax temperature in [0.8, 1.0] on validation.
TEMPERATURE_GRID: tuple[float, ...] = tuple(round(0.8 + 0.02 * k, 2) for k in range(11))


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
    results = evaluate_temperatures(
        model,
        tokens,
        (temperature,),
        batch_size=batch_size,
        bptt=bptt,
        char_lengths=char_lengths,
        max_tokens=max_tokens,
        device=device,
        progress=progress,
        description=description,
    )
    return results[temperature]


@torch.no_grad()
def evaluate_temperatures(
    model,
    tokens: np.ndarray,
    temperatures: tuple[float, ...],
    *,
    batch_size: int = 16,
    bptt: int = 256,
    char_lengths: np.ndarray | None = None,
    max_tokens: int | None = None,
    device="cpu",
    progress: Progress | None = None,
    description: str = "evaluate",
) -> dict[float, EvalResult]:
    """One pass over `tokens`, scored at every softmax temperature: {temperature: result}."""
    was_training = model.training
    model.eval()
    if max_tokens is not None:
        tokens = tokens[: max_tokens + 1]
    lengths = torch.as_tensor(
        char_lengths if char_lengths is not None else np.ones(model.vocab_size), dtype=torch.int64
    )
    temps = torch.tensor(temperatures, dtype=torch.float32, device=device)  # (K,)
    total_nats = torch.zeros(len(temperatures), dtype=torch.float64)
    total_tokens, total_chars = 0, 0
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
            logits = logits.float().reshape(-1, logits.shape[-1])  # (N, V)
            scaled = logits.unsqueeze(0) / temps.view(-1, 1, 1)  # (K, N, V)
            target = y.reshape(1, -1, 1).expand(len(temperatures), -1, 1)  # (K, N, 1)
            nll = -scaled.log_softmax(-1).gather(-1, target).squeeze(-1).sum(-1)  # (K,)
            total_nats += nll.double().cpu()
            total_tokens += y.numel()
            total_chars += int(lengths[y.cpu()].sum())
            task.advance(y.numel())
    model.train(was_training)
    return {
        t: EvalResult(nats=float(n), tokens=total_tokens, chars=total_chars)
        for t, n in zip(temperatures, total_nats)
    }


def tune_temperature(
    model, valid_tokens: np.ndarray, grid: tuple[float, ...] = TEMPERATURE_GRID, **kwargs
) -> tuple[float, dict[float, EvalResult]]:
    """The grid temperature with the lowest valid bpc (ties: the one nearest 1), and every result."""
    results = evaluate_temperatures(model, valid_tokens, tuple(grid), **kwargs)
    best = min(results, key=lambda t: (results[t].nats, abs(t - 1.0)))
    return best, results


def _batch_of(state) -> int:
    return state[0][0].shape[0]
