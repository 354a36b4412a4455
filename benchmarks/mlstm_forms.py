"""Forward time of the three mLSTM forms (recurrent, parallel, chunkwise) over window lengths.

    python benchmarks/mlstm_forms.py                       # T = 128, 512, 2048 on CPU
    python benchmarks/mlstm_forms.py --device cuda --dtype bfloat16 --batch 16

Times the pure functions of lstmlab.cells.gating on random q, k, v and gate
pre-activations shaped (B, NH, T, DH), no gradients, median of --repeats runs
after one warm-up. Prints a table in milliseconds; a form that runs out of
memory is reported as "oom".
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from lstmlab.cells.gating import mlstm_chunkwise, mlstm_parallel, mlstm_recurrent


def time_form(fn, args, device: torch.device, repeats: int) -> float:
    """Median wall time of fn(*args) in milliseconds."""

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    fn(*args)
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(*args)
        sync()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[128, 512, 2048])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--head-dim", type=int, default=128)  # tiny recipe: D = 512, 4 heads
    parser.add_argument("--chunk-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float64"])
    opts = parser.parse_args()
    device, dtype = torch.device(opts.device), getattr(torch, opts.dtype)
    forms = {
        "recurrent": mlstm_recurrent,
        "parallel": mlstm_parallel,
        "chunkwise": lambda *a: mlstm_chunkwise(*a, chunk_size=opts.chunk_size),
    }
    print(
        f"mLSTM forward, ms (median of {opts.repeats}); B={opts.batch} NH={opts.heads} "
        f"DH={opts.head_dim} chunk={opts.chunk_size} {opts.dtype} on {device}"
    )
    print(f"{'T':>6} " + " ".join(f"{name:>12}" for name in forms))
    gen = torch.Generator(device=device).manual_seed(0)
    with torch.no_grad():
        for T in opts.lengths:
            shape = (opts.batch, opts.heads, T)
            q, k, v = (
                torch.randn(*shape, opts.head_dim, generator=gen, device=device, dtype=dtype)
                for _ in range(3)
            )
            i_pre, f_pre = (
                torch.randn(*shape, generator=gen, device=device, dtype=dtype) for _ in range(2)
            )
            cells = []
            for fn in forms.values():
                try:
                    cells.append(
                        f"{time_form(fn, (q, k, v, i_pre, f_pre), device, opts.repeats):12.1f}"
                    )
                except torch.OutOfMemoryError:
                    cells.append(f"{'oom':>12}")
            print(f"{T:>6} " + " ".join(cells), flush=True)


if __name__ == "__main__":
    main()
