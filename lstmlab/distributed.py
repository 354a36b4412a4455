"""Data-parallel training through PyTorch's own engine: torchrun + DistributedDataParallel.

`torchrun --nproc_per_node N -m lstmlab train RECIPE` starts N processes with
RANK / WORLD_SIZE / LOCAL_RANK in their environment; `init_from_env` joins them
into one process group (NCCL on GPUs, gloo on CPUs). The global batch of B
contiguous streams is cut into N equal, disjoint row blocks, rank r taking rows
[r·B/N, (r+1)·B/N), so the data order equals the single-process run's and the
DDP-averaged gradient equals the single-process mean-loss gradient. Each rank
keeps its rows' recurrent state; checkpoints hold the gathered full-batch
state, so a run resumes on any number of processes that divides B.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from lstmlab.errors import ConfigError


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device_for(self, device: torch.device) -> torch.device:
        """This process's device: on CUDA, the GPU of its local rank (made current)."""
        if device.type != "cuda":
            return device
        mine = torch.device("cuda", self.local_rank)
        torch.cuda.set_device(mine)
        return mine

    def rows(self, batch_size: int) -> slice:
        """This rank's block of the global batch's streams."""
        if batch_size % self.world_size:
            raise ConfigError(
                f"train.batch_size {batch_size} does not split evenly over {self.world_size} processes",
                hint="use a batch size divisible by the number of processes",
            )
        per = batch_size // self.world_size
        return slice(self.rank * per, (self.rank + 1) * per)

    def sum(self, values: list[float], device) -> list[float]:
        """Element-wise sum over ranks (float64)."""
        if not self.enabled:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(t)
        return t.tolist()

    def any(self, flags: list[bool], device) -> list[bool]:
        """Element-wise logical OR over ranks: every rank takes the same decision."""
        return [v > 0 for v in self.sum([float(f) for f in flags], device)]

    def gather_rows(self, t: torch.Tensor) -> torch.Tensor:
        """Concatenate every rank's rows (dim 0) in rank order."""
        if not self.enabled:
            return t
        parts = [torch.empty_like(t) for _ in range(self.world_size)]
        dist.all_gather(parts, t.contiguous())
        return torch.cat(parts, dim=0)

    def gather_object(self, obj) -> list:
        """Every rank's Python object, in rank order, on every rank."""
        if not self.enabled:
            return [obj]
        out = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def broadcast(self, obj):
        """Rank 0's Python object on every rank."""
        if not self.enabled:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


SINGLE = DistContext()


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_from_env(device_kind: str) -> DistContext:
    """Join the torchrun process group (once); a plain run returns the single-process context."""
    if not launched_by_torchrun():
        return SINGLE
    if not dist.is_initialized():
        backend = "nccl" if device_kind == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
    return DistContext(
        rank=dist.get_rank(),
        world_size=dist.get_world_size(),
        local_rank=int(os.environ.get("LOCAL_RANK", 0)),
    )


def relaunch_under_torchrun(argv: list[str], nproc: int) -> int:
    """Run `python -m lstmlab ARGV` as `nproc` local torchrun workers; returns its exit code."""
    import subprocess
    import sys

    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        "-m",
        "lstmlab",
        *argv,
    ]
    return subprocess.call(cmd)


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


__all__ = [
    "SINGLE",
    "DistContext",
    "init_from_env",
    "launched_by_torchrun",
    "relaunch_under_torchrun",
    "shutdown",
]
