"""Dynamic evaluation: adapt the weights to the text while scoring it.

Krause, Kahembwe, Murray & Renals, "Dynamic Evaluation of Neural Sequence
Models", ICML 2018, arXiv:1709.07432 — the "RMS with a global decay prior"
variant (their section 5), which the paper uses for its headline results.

Before evaluation, gradient statistics are collected once on training data:
the loss of each (batch, n) training window is back-propagated and

    MS  = mean over windows of  grad²            (per weight)
    RMS = sqrt(MS)

The text to score is then read as one stream (batch 1) in segments of n
tokens. Each segment is scored with the current weights θ — that score is
what bpc reports, so no token is ever seen before it is predicted — and only
then are the weights adapted on it:

    θ ← θ − η · ∇L(segment) / (RMS + ε)  +  λ · d ⊙ (θ₀ − θ)
    d = min(RMS / mean RMS, 1/λ)          (the decay factor λ·d is capped at 1)

where θ₀ are the trained weights, L is the mean loss per token of the
segment, and "mean RMS" averages, over the model's weight tensors, each
tensor's mean RMS. The recurrent state is carried from segment to segment.
Nothing here knows which cell the model uses: it needs only
`initial_state`, `forward(ids, state)` and the parameters, so it works for
every cell. The weights are restored to θ₀ afterwards.

Defaults are those of the authors' reference implementation
(benkrause/dynamic-evaluation): η = 5e-5, λ = 2e-3, ε = 2e-5, n = 5, and
gradient statistics over the whole training split in batches of 100 streams.

Shapes: B batch (streams), T segment length, V vocabulary.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import ValidationError
from torch import Tensor

from lstmlab.batching import Streams
from lstmlab.cells import detach_state
from lstmlab.config import DynamicEvalConfig
from lstmlab.errors import CheckpointError, CorpusError, UsageError
from lstmlab.evaluate import EvalResult
from lstmlab.progress import NullProgress, Progress


def _segment_nats(model, x: Tensor, y: Tensor, state, temperature: float):
    """Nats of each target y (B, T) given inputs x (B, T), and the next state; keeps the graph."""
    logits, state = model(x, state)  # (B, T, V)
    logits = logits.float()
    if temperature != 1.0:
        logits = logits / temperature
    flat = logits.reshape(-1, logits.shape[-1])  # (B·T, V)
    nats = F.cross_entropy(flat, y.reshape(-1), reduction="none")  # (B·T,)
    return nats, state


def gradient_rms(
    model,
    train_tokens: np.ndarray,
    *,
    batch_size: int = 100,
    segment_len: int = 5,
    max_tokens: int | None = None,
    device="cpu",
    progress: Progress | None = None,
) -> dict[str, Tensor]:
    """RMS of the mean-loss gradient over (batch_size, segment_len) training windows, per parameter.

    The model runs in eval mode (no dropout), with its state carried between
    windows, as when the weights were trained.
    """
    if max_tokens is not None:
        train_tokens = train_tokens[: max_tokens + 1]
    streams = Streams(train_tokens, max(1, min(batch_size, len(train_tokens) - 1)))
    params = dict(model.named_parameters())
    sums = {name: torch.zeros_like(p, dtype=torch.float32) for name, p in params.items()}
    was_training = model.training
    model.eval()
    state = model.initial_state(streams.batch_size, device=device)
    windows = 0
    with (progress or NullProgress()).task("gradient statistics", total=streams.length) as task:
        for start in range(0, streams.length, segment_len):
            x, y = streams.window(start, segment_len)
            nats, state = _segment_nats(model, x.to(device), y.to(device), state, 1.0)
            state = detach_state(state)
            model.zero_grad(set_to_none=True)
            nats.mean().backward()
            for name, p in params.items():
                if p.grad is not None:
                    sums[name] += p.grad.float() ** 2
            windows += 1
            task.advance(x.shape[1])
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    return {name: (s / windows).sqrt() for name, s in sums.items()}


def decay_rates(rms: dict[str, Tensor], decay: float) -> dict[str, Tensor]:
    """d = RMS / (mean over tensors of each tensor's mean RMS), capped at 1/λ so that λ·d ≤ 1."""
    global_mean = sum(float(r.mean()) for r in rms.values()) / len(rms)
    if global_mean <= 0.0:
        raise CheckpointError(
            "the training gradients are all zero, so dynamic evaluation has no scale",
            hint="check the checkpoint and the training split",
        )
    cap = math.inf if decay == 0.0 else 1.0 / decay
    return {name: (r / global_mean).clamp(max=cap) for name, r in rms.items()}


class DynamicEvaluator:
    """Scores a stream segment by segment, adapting the weights after each segment (never before)."""

    def __init__(self, model, rms: dict[str, Tensor], settings: DynamicEvalConfig) -> None:
        self.model = model
        self.settings = settings
        self.params = dict(model.named_parameters())
        self.rms = {name: rms[name].to(p.device) for name, p in self.params.items()}
        self.rate = decay_rates(self.rms, settings.decay)
        self.theta0 = {name: p.detach().clone() for name, p in self.params.items()}

    def score(self, x: Tensor, y: Tensor, state, temperature: float = 1.0):
        """Per-target nats (T,) of one segment under the current weights, the next state; grads set."""
        self.model.zero_grad(set_to_none=True)
        nats, state = _segment_nats(self.model, x, y, state, temperature)
        nats.mean().backward()
        return nats.detach(), detach_state(state)

    @torch.no_grad()
    def update(self) -> None:
        """θ ← θ − η·∇/(RMS + ε) + λ·d⊙(θ₀ − θ), with the gradients `score` left behind."""
        s = self.settings
        for name, p in self.params.items():
            step = s.decay * self.rate[name] * (self.theta0[name] - p)
            if p.grad is not None:
                step -= s.lr * p.grad / (self.rms[name] + s.eps)
            p.add_(step)

    @torch.no_grad()
    def restore(self) -> None:
        """Put the trained weights θ₀ back."""
        for name, p in self.params.items():
            p.copy_(self.theta0[name])
        self.model.zero_grad(set_to_none=True)

    def token_nats(
        self,
        tokens: np.ndarray,
        *,
        temperature: float = 1.0,
        device="cpu",
        progress: Progress | None = None,
        description: str = "dynamic eval",
    ) -> np.ndarray:
        """Nats of every token after the first (N − 1,), each scored before any update that saw it."""
        if len(tokens) < 2:
            raise CorpusError(f"a split of {len(tokens)} token(s) has nothing to predict")
        n = self.settings.segment_len
        was_training = self.model.training
        self.model.eval()
        ids = torch.from_numpy(np.ascontiguousarray(tokens, dtype=np.int64)).to(device)
        out = np.empty(len(tokens) - 1, dtype=np.float64)
        state = self.model.initial_state(1, device=device)
        try:
            with (progress or NullProgress()).task(description, total=len(out)) as task:
                for start in range(0, len(out), n):
                    end = min(start + n, len(out))
                    x, y = ids[None, start:end], ids[None, start + 1 : end + 1]  # (1, T)
                    nats, state = self.score(x, y, state, temperature)
                    out[start:end] = nats.cpu().double().numpy()
                    self.update()
                    task.advance(end - start)
        finally:
            self.restore()
            self.model.train(was_training)
        return out


def dynamic_evaluate(
    model,
    tokens: np.ndarray,
    rms: dict[str, Tensor],
    settings: DynamicEvalConfig,
    *,
    char_lengths: np.ndarray | None = None,
    temperature: float = 1.0,
    max_tokens: int | None = None,
    device="cpu",
    progress: Progress | None = None,
    description: str = "dynamic eval",
) -> EvalResult:
    """bpc of `tokens` under dynamic evaluation (the same totals as `evaluate.evaluate` reports)."""
    if max_tokens is not None:
        tokens = tokens[: max_tokens + 1]
    nats = DynamicEvaluator(model, rms, settings).token_nats(
        tokens, temperature=temperature, device=device, progress=progress, description=description
    )
    lengths = char_lengths if char_lengths is not None else np.ones(model.vocab_size, np.int64)
    chars = int(np.asarray(lengths)[np.asarray(tokens[1:], dtype=np.int64)].sum())
    return EvalResult(nats=float(nats.sum()), tokens=len(nats), chars=chars)


# The CLI flag that sets each eval.dynamic field, for error messages.
DYNAMIC_FLAGS = {
    "lr": "--dyn-lr",
    "decay": "--dyn-decay",
    "segment_len": "--segment-len",
    "ms_tokens": "--ms-tokens",
    "eps": "eval.dynamic.eps (in the run's config.yaml)",
    "ms_batch_size": "eval.dynamic.ms_batch_size (in the run's config.yaml)",
}


def dynamic_settings(base: DynamicEvalConfig, overrides: dict | None) -> DynamicEvalConfig:
    """The recipe's eval.dynamic with the non-None `overrides` (field -> value), validated.

    Non-finite floats are refused here: pydantic's `gt=0` lets inf through, and
    an infinite learning rate would only show as a NaN bpc much later.
    """
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    for key, value in given.items():
        flag = DYNAMIC_FLAGS.get(key, key)
        if key not in DynamicEvalConfig.model_fields:
            raise UsageError(
                f"unknown dynamic evaluation setting {key!r}",
                hint=f"use {', '.join(DynamicEvalConfig.model_fields)}",
            )
        if isinstance(value, float) and not math.isfinite(value):
            raise UsageError(f"{flag} must be a finite number, got {value}")
    try:
        return DynamicEvalConfig.model_validate({**base.model_dump(), **given})
    except ValidationError as exc:
        err = exc.errors()[0]
        flag = DYNAMIC_FLAGS.get(str(err["loc"][0]), str(err["loc"][0]))
        raise UsageError(f"{flag}: {err['msg']}") from None
