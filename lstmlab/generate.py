"""Sampling: warm the state on a prime text, then draw one symbol at a time (T = 1 steps).

The filters are pure functions on logits: temperature (0 = greedy), top-k
(keep the k most likely), top-p / nucleus (keep the smallest set whose
probability reaches p). Randomness comes from an explicit torch.Generator.
`generate` yields ids; `sample_text` is `lstmlab sample` as a function,
yielding printable text pieces.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

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


SEED_RANGE = (0, 2**64 - 1)  # what torch.Generator.manual_seed takes
PRIME_WINDOW = 256  # prime tokens fed per model call when the caller gives no window


def check_sampling_args(
    length: int,
    temperature: float,
    top_k: int | None,
    top_p: float | None,
    seed: int | None = None,
) -> None:
    """UsageError for anything `generate` cannot honour (NaN and inf included)."""
    if length < 0:
        raise UsageError(f"--length must be >= 0, got {length}")
    if not math.isfinite(temperature) or temperature < 0:
        raise UsageError(
            f"--temperature must be a finite number >= 0 (0 = greedy), got {temperature}"
        )
    if top_k is not None and top_k < 1:
        raise UsageError(f"--top-k must be >= 1, got {top_k}")
    if top_p is not None and not 0.0 < top_p <= 1.0:  # also false for NaN
        raise UsageError(f"--top-p must be in (0, 1], got {top_p}")
    if seed is not None and not SEED_RANGE[0] <= seed <= SEED_RANGE[1]:
        raise UsageError(f"--seed must be in [0, 2**64 - 1], got {seed}")


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
    window: int = PRIME_WINDOW,
) -> Iterator[int]:
    """Yield `length` sampled ids after warming the state on `prime_ids` (at least one id).

    The prime is fed `window` tokens at a time with the state carried, so a
    megabyte prime costs the memory of one window, not of the whole text.
    """
    check_sampling_args(length, temperature, top_k, top_p, seed)
    if not prime_ids:
        raise UsageError("the prime text is empty", hint="pass --prime with at least one symbol")
    if window < 1:
        raise UsageError(f"the prime window must be >= 1 token, got {window}")
    model.eval()
    generator = torch.Generator(device=device)
    if seed is not None:
        generator.manual_seed(seed)
    else:
        generator.seed()
    state = model.initial_state(1, device=device)
    prime = torch.as_tensor(prime_ids, dtype=torch.long)  # (P,)
    for start in range(0, len(prime), window):
        chunk = prime[None, start : start + window].to(device)  # (1, ≤window)
        logits, state = model(chunk, state)
        last = logits[:, -1]  # (1, V): only the final window's last position is kept
    for _ in range(length):
        token = next_token(
            last, temperature=temperature, top_k=top_k, top_p=top_p, generator=generator
        )
        yield int(token)
        logits, state = model(token[:, None], state)  # T = 1 step
        last = logits[:, -1]


def sample_text(
    model,
    tokenizer,
    prime: str,
    length: int,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int | None = 0,
    device="cpu",
    echo: bool = True,
    window: int = PRIME_WINDOW,
) -> Iterator[str]:
    """Yield the text of `length` sampled symbols (after the prime itself when `echo`), piece by piece.

    Pieces are whole characters: ids are decoded in growing runs until they
    stop ending in a partial UTF-8 sequence (byte corpora), so a consumer can
    print each piece as it comes. Joined, the pieces are the prime (when
    echoed) followed by the decoded sample. Arguments as in `generate`.
    """
    check_sampling_args(length, temperature, top_k, top_p, seed)
    prime_ids = tokenizer.encode(prime)
    ids = generate(
        model,
        prime_ids,
        length,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        seed=seed,
        device=device,
        window=window,
    )
    if echo:
        yield tokenizer.decode(prime_ids)
    pending: list[int] = []
    for token in ids:
        pending.append(token)
        text = tokenizer.decode(pending)
        # A byte-level character is at most 4 bytes: past that the replacement char is real.
        if not text.endswith("\ufffd") or len(pending) > 4:
            yield text
            pending.clear()
    if pending:
        yield tokenizer.decode(pending)


def read_prime_file(path: Path) -> str:
    """The UTF-8 text of a --prime-file, or a one-line UsageError."""
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"--prime-file {path} is not UTF-8 text") from None
    except IsADirectoryError:
        raise UsageError(f"--prime-file {path} is a folder, not a file") from None
    except FileNotFoundError:
        raise UsageError(f"--prime-file {path} does not exist") from None
