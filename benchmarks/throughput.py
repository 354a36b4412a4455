"""Throughput benchmark of every registered cell against torch.nn.LSTM (same as `lstmlab bench`).

    python benchmarks/throughput.py                                  # reference size, all cells
    python benchmarks/throughput.py --sizes 512,256,1024 --windows 128,512,2048

The measurement lives in `lstmlab.bench`; results land in benchmarks/results/.
"""

from __future__ import annotations

import typer

from lstmlab.allocator import keep_freed_memory
from lstmlab.cli.bench import bench_cmd

if __name__ == "__main__":
    keep_freed_memory()  # as the `lstmlab` command does
    typer.run(bench_cmd)
