"""Sampling: warm the state on a prime text, then draw one symbol at a time (T = 1 steps).

The filters are pure functions on logits: temperature (0 = greedy), top-k
(keep the k most likely), top-p / nucleus (keep the smallest set whose
probability reaches p). Randomness comes from an explicit torch.Generator.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

from lstmlab.errors import UsageError


def filter_top_k(logits: Tensor, k: int | None) -> Tensor:
    """Keep the k largest logits per row; the rest become -inf."""
    if k is None or k >= logits.shape[-1]:
        return logits
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def filter_top_p(logits: Tensor, p: float | None) -> Tensor:
    """Keep the smallest set of most likely symbols whose total probability is >= p."""
    if p is None or p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    cum = torch.softmax(sorted_logits, dim=-1).cumsum(dim=-1)
    # drop a symbol when the mass before it already reaches p (the top one always stays)
    drop_sorted = (cum - torch.softmax(sorted_logits, dim=-1)) >= p
    drop = drop_sorted.scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def next_token(
    logits: Tensor, *, temperature: float, top_k: int | None, top_p: float | None, generator
) -> Tensor:
    """Draw ids (B,) from logits (B, V)."""
    if temperature == 0.0:
        return logits.argmax(dim=-1)
    logits = filter_top_p(filter_top_k(logits / temperature, top_k), top_p)
    probs = torch.softmax(logits.float(), dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def check_sampling_args(
    length: int, temperature: float, top_k: int | None, top_p: float | None
) -> None:
    if length < 0:
        raise UsageError(f"--length must be >= 0, got {length}")
    if temperature < 0:
        raise UsageError(f"--temperature must be >= 0 (0 = greedy), got {temperature}")
    if top_k is not None and top_k < 1:
        raise UsageError(f"--top-k must be >= 1, got {top_k}")
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise UsageError(f"--top-p must be in (0, 1], got {top_p}")


@torch.no_grad()
def generate(
    model,
    prime_ids: list[int],
    length: int,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int | None = 0,
    device="cpu",
) -> Iterator[int]:
    """Yield `length` sampled ids after warming the state on `prime_ids` (at least one id)."""
    check_sampling_args(length, temperature, top_k, top_p)
    if not prime_ids:
        raise UsageError("the prime text is empty", hint="pass --prime with at least one symbol")
    model.eval()
    generator = torch.Generator(device=device)
    if seed is not None:
        generator.manual_seed(seed)
    else:
        generator.seed()
    state = model.initial_state(1, device=device)
    prime = torch.tensor([prime_ids], dtype=torch.long, device=device)  # (1, P)
    logits, state = model(prime, state)  # one window warms the state
    last = logits[:, -1]  # (1, V)
    for _ in range(length):
        token = next_token(
            last, temperature=temperature, top_k=top_k, top_p=top_p, generator=generator
        )
        yield int(token)
        logits, state = model(token[:, None], state)  # T = 1 step
        last = logits[:, -1]
