"""Optimizer, parameter groups and learning-rate schedule: pure functions of the recipe.

`lr_factor(step, ...)` is the multiplier of the base learning rate for a 0-based
step (linear warm-up, then constant, cosine or linear decay to `min_lr_ratio`, or
step decay at epoch milestones); `total_steps` is the step budget a recipe's
max_steps / max_tokens / max_epochs imply. `apply_optimizer_settings` puts a
recipe's hyperparameters into an optimizer restored from a checkpoint, so an
override given on `--resume` takes effect instead of being recorded and ignored.
"""

from __future__ import annotations

import math

import torch

from lstmlab.config import ScheduleConfig, TrainConfig
from lstmlab.errors import ConfigError


def total_steps(train: TrainConfig, stream_length: int) -> int | None:
    """The steps max_steps / max_tokens / max_epochs allow (None: a time budget only).

    `stream_length` is L, the pairs per stream of the training split. Each epoch takes
    ceil(L / bptt) windows, the last of them shorter when bptt does not divide L, so a
    token budget is counted window by window, not as max_tokens / (batch · bptt): the
    schedule then ends on the last step taken and the progress total is the true one.
    """
    steps_per_epoch = math.ceil(stream_length / train.bptt)
    candidates = []
    if train.max_steps:
        candidates.append(train.max_steps)
    if train.max_tokens:
        epochs, rest = divmod(train.max_tokens, train.batch_size * stream_length)
        within = math.ceil(rest / (train.batch_size * train.bptt))  # full windows come first
        candidates.append(epochs * steps_per_epoch + within)
    if train.max_epochs:
        candidates.append(math.ceil(train.max_epochs * steps_per_epoch))
    return min(candidates) if candidates else None


def lr_factor(
    step: int, schedule: ScheduleConfig, total: int | None, steps_per_epoch: int
) -> float:
    """Multiplier of the base learning rate for the step about to be taken (0-based)."""
    if schedule.warmup_steps and step < schedule.warmup_steps:
        return (step + 1) / schedule.warmup_steps
    if schedule.name in ("cosine", "linear"):
        span = max(1, (schedule.decay_steps or total or 1) - schedule.warmup_steps)
        progress = min(1.0, (step - schedule.warmup_steps) / span)
        if schedule.name == "cosine":
            shape = 0.5 * (1 + math.cos(math.pi * progress))
        else:
            shape = 1.0 - progress
        return schedule.min_lr_ratio + (1 - schedule.min_lr_ratio) * shape
    if schedule.name == "step":
        passed = sum(step >= m * steps_per_epoch for m in schedule.milestones_epochs)
        return schedule.factor**passed
    return 1.0


def decay_groups(model: torch.nn.Module, weight_decay: float, which: str) -> list[dict]:
    """Parameter groups: with "matrices", only weight matrices and conv kernels are decayed."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    if which == "all" or weight_decay == 0.0:
        return [{"params": trainable, "weight_decay": weight_decay}]
    embedding = getattr(model, "embedding", None)
    spared = {id(embedding.weight)} if embedding is not None else set()
    decay = [p for p in trainable if p.ndim >= 2 and id(p) not in spared]
    keep = [p for p in trainable if not (p.ndim >= 2 and id(p) not in spared)]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": keep, "weight_decay": 0.0}]


def build_optimizer(model: torch.nn.Module, train: TrainConfig) -> torch.optim.Optimizer:
    opt = train.optimizer
    params = decay_groups(model, opt.weight_decay, opt.decay)
    if opt.name == "sgd":
        return torch.optim.SGD(
            params, lr=opt.lr, momentum=opt.momentum, weight_decay=opt.weight_decay
        )
    cls = torch.optim.AdamW if opt.name == "adamw" else torch.optim.Adam
    return cls(params, lr=opt.lr, betas=opt.betas, eps=opt.eps, weight_decay=opt.weight_decay)


def apply_optimizer_settings(optimizer, scheduler, tcfg: TrainConfig, step_factor: float) -> None:
    """Put the recipe's learning rate, betas, eps, momentum and weight decay into the restored optimizer."""
    opt = tcfg.optimizer
    groups = optimizer.param_groups
    decayed = [g for g in groups if g["weight_decay"] != 0.0] or groups[:1]
    # With decay: matrices and no decay, every parameter sits in one group (biases too).
    one_undecayed_group = len(groups) == 1 and groups[0]["weight_decay"] == 0.0
    if opt.weight_decay != 0.0 and opt.decay == "matrices" and one_undecayed_group:
        raise ConfigError(
            "train.optimizer.weight_decay cannot change from 0 when resuming a run with "
            "decay: matrices (its optimizer has no separate decayed group)",
            hint="start a new run for weight decay",
        )
    for group in groups:
        if "betas" in group:
            group["betas"] = tuple(opt.betas)
        if "eps" in group:
            group["eps"] = opt.eps
        if "momentum" in group:
            group["momentum"] = opt.momentum
        group["initial_lr"] = opt.lr
        group["lr"] = opt.lr * step_factor
    for group in decayed:
        group["weight_decay"] = opt.weight_decay
    scheduler.base_lrs = [opt.lr for _ in groups]


__all__ = [
    "apply_optimizer_settings",
    "build_optimizer",
    "decay_groups",
    "lr_factor",
    "total_steps",
]
