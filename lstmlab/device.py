"""Device choice: `auto` means CUDA, then Apple MPS, then CPU; anything else must exist here.

`torch.device("mps")` or `torch.device("cuda:7")` builds fine on a machine
without them and fails only at the first tensor, deep in a command; so a name
is checked against the devices this torch build and machine actually have,
and refused in one line naming those.
"""

from __future__ import annotations

import torch

from lstmlab.errors import UsageError


def available_devices() -> list[str]:
    """Names `resolve_device` accepts besides `auto`, e.g. ['cpu', 'cuda', 'cuda:0']."""
    names = ["cpu"]
    if torch.cuda.is_available():
        names += ["cuda", *(f"cuda:{i}" for i in range(torch.cuda.device_count()))]
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        names.append("mps")
    xpu = getattr(torch, "xpu", None)
    if xpu is not None and xpu.is_available():
        names += ["xpu", *(f"xpu:{i}" for i in range(xpu.device_count()))]
    return names


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    present = available_devices()
    hint = f"use --device auto or one of: {', '.join(present)}"
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        raise UsageError(f"unknown device {name!r}", hint=hint) from None
    # cpu:0 is the CPU; cuda:N and xpu:N must be a GPU this machine has.
    key = device.type if device.type == "cpu" or device.index is None else str(device)
    if key not in present:
        raise UsageError(f"device {name!r} is not available on this machine", hint=hint)
    return device


def cpu_model() -> str:
    """The CPU's marketing name (Linux /proc/cpuinfo), else what platform knows."""
    import platform
    from pathlib import Path

    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
