"""Device choice: `auto` means CUDA, then Apple MPS, then CPU."""

from __future__ import annotations

import torch

from lstmlab.errors import UsageError


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(
            f"device {name!r} asked for, but this machine has no CUDA GPU",
            hint="use --device cpu or auto",
        )
    try:
        return torch.device(name)
    except RuntimeError:
        raise UsageError(f"unknown device {name!r}", hint="use auto, cpu, cuda or cuda:N") from None
