"""Which way of fusing a recurrent cell's per-step work is fastest here: the measurement behind
the cells' default.

    python benchmarks/fusion.py                      # multiplicative, mogrifier, slstm; 512 x 128
    python benchmarks/fusion.py --cells multiplicative --steps 5
    python benchmarks/fusion.py --device cuda        # on a GPU machine

For each cell, one training step (forward, cross-entropy, backward, Adam) of the
benchmark's language model (`lstmlab.bench.build_bench_model`: one layer,
input = hidden, batch 32, 256 symbols) under each way to run its time loop:

    eager loop           the step loop under autograd (`lstmlab.kernels.reference_only()`)
    TorchScript update   the loop with the elementwise update (`lstm_pointwise` /
                         `slstm_pointwise`) traced by torch.jit.trace
    compiled update      the same update through torch.compile (inductor)
    compiled step        the cell's whole step function through torch.compile
                         (where the cell has one: multiplicative, mogrifier)
    window Function      the cell's window kernel, a hand-written autograd Function
                         (`lstmlab.kernels`, the default)

reported as training tokens/s, as a ratio to torch.nn.LSTM, and with the first
call's time (tracing or compilation included; inductor's on-disk cache can
shorten a repeated compile). Per cell the ways and the yardstick are timed
interleaved, one training step of each per round, so load from other processes
falls on all of them alike; the median of --steps rounds after the first call
and two warm-ups is reported. Results
go to benchmarks/results/fusion-<machine>-<time>.{md,json}.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import pkgutil
import statistics
import time
import warnings
from collections.abc import Callable
from contextlib import ExitStack, contextmanager
from pathlib import Path
from unittest import mock

import torch
import torch.nn.functional as F

from lstmlab import kernels
from lstmlab.allocator import keep_freed_memory
from lstmlab.bench import (
    VOCAB_SIZE,
    YARDSTICK,
    BenchReport,
    build_bench_model,
    describe_machine,
    results_stem,
)
from lstmlab.cells import RecurrentCell, detach_state
from lstmlab.cells.gating import slstm_pointwise
from lstmlab.cells.lstm import lstm_pointwise

RESULTS = Path(__file__).resolve().parent / "results"

# Where each cell's loop looks up its elementwise update (patched by the variants below).
UPDATE_SITES = {
    "multiplicative": ("lstmlab.cells.multiplicative.lstm_pointwise", lstm_pointwise),
    "mogrifier": ("lstmlab.cells.lstm.lstm_pointwise", lstm_pointwise),
    "slstm": ("lstmlab.cells.slstm.slstm_pointwise", slstm_pointwise),
}
STEP_SITES = {
    "multiplicative": "lstmlab.cells.multiplicative.multiplicative_step",
    "mogrifier": "lstmlab.cells.mogrifier.MogrifierCell._mogrifier_step",
    "slstm": "lstmlab.cells.slstm.slstm_step",
}


def _trace_update(cell_kind: str, update: Callable) -> Callable:
    """torch.jit.trace of the update at its default flags, keyword-compatible with the original."""
    if cell_kind == "slstm":

        def plain(i, f, z, o, c, n, m):
            return update(i, f, z, o, c, n, m)

        traced = {}

        def call(i, f, z, o, c, n, m, *, forget_gate="sigmoid"):
            assert forget_gate == "sigmoid"
            if "fn" not in traced:
                traced["fn"] = torch.jit.trace(plain, (i, f, z, o, c, n, m), check_trace=False)
            return traced["fn"](i, f, z, o, c, n, m)

        return call

    def plain_lstm(gates, c):
        return update(gates, c)

    traced = {}

    def call_lstm(gates, c, *, capped_input_gate=False):
        assert not capped_input_gate
        if "fn" not in traced:
            traced["fn"] = torch.jit.trace(plain_lstm, (gates, c), check_trace=False)
        return traced["fn"](gates, c)

    return call_lstm


@contextmanager
def variant(name: str, cell_kind: str, cell: RecurrentCell):
    """Run `cell` the way `name` says for the duration of the block."""
    with ExitStack() as stack:
        if name != "window Function":
            stack.enter_context(kernels.reference_only())
        if name == "TorchScript update":
            site, update = UPDATE_SITES[cell_kind]
            stack.enter_context(mock.patch(site, _trace_update(cell_kind, update)))
        elif name == "compiled update":
            site, update = UPDATE_SITES[cell_kind]
            stack.enter_context(mock.patch(site, torch.compile(update, dynamic=False)))
        elif name == "compiled step":
            site = STEP_SITES[cell_kind]
            owner, attr = site.rsplit(".", 1)
            target = pkgutil.resolve_name(owner)
            stack.enter_context(
                mock.patch.object(target, attr, torch.compile(getattr(target, attr), dynamic=False))
            )
        yield


def variants_for(cell_kind: str) -> list[str]:
    names = ["eager loop", "TorchScript update", "compiled update"]
    if cell_kind in STEP_SITES:
        names.append("compiled step")
    return [*names, "window Function"]


def make_train_step(model, batch: int, window: int) -> Callable[[], None]:
    """One training step of `model` on fixed random ids: forward, cross-entropy, backward, Adam,
    on the model's device (waiting for a GPU to finish, so wall time measures the step)."""
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, VOCAB_SIZE, (batch, window), generator=gen).to(device)  # (B, T)
    y = torch.randint(0, VOCAB_SIZE, (batch, window), generator=gen).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    carried = {"state": model.initial_state(batch, device=device)}
    model.train()

    def train_step() -> None:
        logits, state = model(x, detach_state(carried["state"]))  # (B, T, V)
        F.cross_entropy(logits.reshape(-1, VOCAB_SIZE), y.reshape(-1)).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        carried["state"] = state
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    return train_step


def the_cell(model) -> RecurrentCell:
    return next(m for m in model.modules() if isinstance(m, RecurrentCell))


def interleaved_seconds(runs: dict[str, Callable[[], None]], rounds: int) -> dict[str, list[float]]:
    """Wall seconds of every call: `rounds` rounds, each calling every run once in turn, so
    load from other processes falls on all of them alike. The first round is the first call."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            t0 = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - t0)
    return times


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", default="multiplicative,mogrifier,slstm")
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--window", type=int, default=128)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N")
    parser.add_argument("--variants", default=None, help="comma-separated subset of the ways")
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    opts = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=DeprecationWarning)  # torch.jit's notice
    if opts.threads:
        torch.set_num_threads(opts.threads)
    tokens = opts.batch * opts.window
    device = torch.device(opts.device)
    wanted = opts.variants.split(",") if opts.variants else None
    rows = []
    for kind in opts.cells.split(","):
        runs = {
            YARDSTICK: make_train_step(
                build_bench_model(YARDSTICK, opts.hidden).to(device), opts.batch, opts.window
            )
        }
        for name in variants_for(kind):
            if wanted and name not in wanted:
                continue
            torch.manual_seed(0)
            model = build_bench_model(kind, opts.hidden).to(device)
            step = make_train_step(model, opts.batch, opts.window)

            def run(name=name, kind=kind, cell=the_cell(model), step=step) -> None:
                with variant(name, kind, cell):
                    step()

            runs[name] = run
        times = interleaved_seconds(runs, 3 + opts.steps)  # first call, 2 warm-ups, timed steps
        ref_s = statistics.median(times[YARDSTICK][3:])
        for name, secs in times.items():
            step_s = statistics.median(secs[3:])
            row = {
                "cell": kind if name != YARDSTICK else YARDSTICK,
                "variant": name if name != YARDSTICK else f"yardstick for {kind}",
                "first_s": secs[0],
                "tok_s": tokens / step_s,
                "ratio": ref_s / step_s,
            }
            rows.append(row)
            print(
                f"{kind:>15} {name:<20} {row['tok_s']:>8,.0f} tok/s  {row['ratio']:.2f}x  "
                f"first call {secs[0]:6.1f} s"
            )
    write(rows, opts)


def write(rows: list[dict], opts) -> None:
    machine = describe_machine(torch.device(opts.device), torch.get_num_threads())
    created = dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()
    stem = "fusion-" + results_stem(BenchReport(machine, {}, [], created))
    opts.out_dir.mkdir(parents=True, exist_ok=True)
    settings = {k: v for k, v in vars(opts).items() if k != "out_dir"}
    payload = {"created": created, "machine": machine, "settings": settings, "rows": rows}
    (opts.out_dir / f"{stem}.json").write_text(json.dumps(payload, indent=2) + "\n")
    lines = [
        f"# Per-step fusion, {created}",
        "",
        f"- machine: {machine.get('gpu') or machine['cpu']} ({opts.device}), "
        f"{machine['usable_cores']} usable cores, torch "
        f"{machine['torch']} with {machine['torch_threads']} threads, load average at start "
        f"{machine['load_average_at_start']}",
        f"- training step of the benchmark LM: hidden {opts.hidden}, window {opts.window}, "
        f"batch {opts.batch}, float32; per cell the ways and torch.nn.LSTM run interleaved, "
        f"median of {opts.steps} rounds after the first call and 2 warm-ups",
        "",
        "| cell | way | train tok/s | × nn.LSTM | first call s |",
        "|---|---|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['cell']} | {r['variant']} | {r['tok_s']:,.0f} | {r['ratio']:.2f} "
            f"| {r['first_s']:.1f} |"
        )
    (opts.out_dir / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {opts.out_dir / stem}.md")


if __name__ == "__main__":
    keep_freed_memory()  # as the `lstmlab` command does
    main()
