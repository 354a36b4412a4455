"""Training throughput of the sLSTM recurrence's CPU routes, measured side by side in one process.

    python benchmarks/slstm_step.py                  # reference size: d 512, 4 heads, B 32, T 128
    python benchmarks/slstm_step.py --repeats 9 --threads 1
    python benchmarks/slstm_step.py --part recurrence    # the recurrence alone, no yardstick

Every route trains the same `lstmlab bench` network (embedding -> one sLSTM block
-> head, see lstmlab/bench.py) and differs only in how the recurrence runs:

    loop       the reference step loop, eager autograd (`window_function = False`)
    window     the window as one autograd Function (slstm_window.py), the cell's default
    compile    the step loop with `slstm.slstm_step` (per-head R h + `slstm_pointwise`)
               replaced by torch.compile of it, backward compiled by AOTAutograd
    jit        the same with torch.jit.trace of the step (TorchScript; deprecated)

and torch.nn.LSTM's network at the same size is the yardstick. With --part
recurrence only the recurrence is timed (random wx -> y from the zero state,
forward and backward; no yardstick). The routes are timed interleaved, one
training step (forward, cross-entropy, backward, Adam) of each per round, so
load from other processes hits them alike; --settle untimed steps of the same
route come first, so that it meets the allocator as it left it, as in training. Reported per route:

    tok/s, best      tokens/s of the median round and of the fastest
    x loop, x LSTM   the median's ratio to the loop and to torch.nn.LSTM
    paired           median over rounds of the loop's time / the route's, same round
    cpu ...          the same from the thread's CPU time, which leaves out time the
                     scheduler gave other processes
    peak MiB         peak net allocation inside a step (parameters and Adam state
                     not counted)
    first s          how much longer the first three steps took than three steady
                     ones: tracing and compiling, with an empty inductor cache

Nothing here changes the cell: compile and jit are patched in for the
measurement only.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import tempfile
import time
import warnings

import torch
import torch.nn.functional as F

from lstmlab.bench import YARDSTICK, build_bench_model, cpu_peak_allocated_bytes
from lstmlab.cells import detach_state
from lstmlab.cells import slstm as slstm_module
from lstmlab.cells.slstm_window import slstm_window

VOCAB = 256


def traced_step(batch: int, hidden: int, heads: int, forget_gate: str):
    """torch.jit.trace of slstm_step at these sizes (forget_gate fixed by the trace)."""
    hd = hidden // heads
    wx_t = torch.randn(batch, 4, heads, hd)
    h, c, m = (torch.randn(batch, hidden) for _ in range(3))
    n = torch.rand(batch, hidden) + 1.0
    recurrent = torch.randn(heads, hd, 4 * hd, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TorchScript's deprecation and tracer warnings
        traced = torch.jit.trace(
            lambda *a: slstm_module.slstm_step(*a, forget_gate), (wx_t, h, c, n, m, recurrent)
        )
    return lambda wx_t, h, c, n, m, recurrent, forget_gate: traced(wx_t, h, c, n, m, recurrent)


class Route:
    """One way to run a training step; `setup` patches the recurrence it uses while it runs."""

    def __init__(self, name, model, step_fn=None, window_function=False) -> None:
        self.name, self.model, self.step_fn = name, model, step_fn
        self.step = self.train_step  # or recurrence_step
        self.window_function = window_function
        self.optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
        self.state = None
        self.times: list[float] = []  # wall seconds per step
        self.cpu_times: list[float] = []  # this thread's CPU seconds per step

    @contextlib.contextmanager
    def setup(self):
        cell = getattr(self.model, "layers", [None])[0]
        if cell is not None:
            cell.window_function = self.window_function
        original = slstm_module.slstm_step
        if self.step_fn is not None:
            slstm_module.slstm_step = self.step_fn
        try:
            yield
        finally:
            slstm_module.slstm_step = original

    def train_step(self, x, y) -> None:
        with self.setup():
            state = detach_state(self.state)
            logits, state = self.model(x, state)  # (B, T, V)
            loss = F.cross_entropy(logits.reshape(-1, VOCAB), y.reshape(-1))
            loss.backward()
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.state = state

    def recurrence_step(self, wx, dy) -> None:
        """Only the recurrence, from the zero state: wx (B, T, 4, NH, hd) -> y, backward of dy."""
        cell = self.model.layers[0]
        state = cell.initial_state(wx.shape[0])
        with self.setup():
            if self.window_function:
                y = slstm_window(
                    wx, *state[:4], cell.recurrent_weight, forget_gate=cell.config.forget_gate
                )[0]
            else:
                y, _ = cell._loop(wx, state, cell.recurrent_weight)
            y.backward(dy)

    def timed_step(self, *batch) -> float:
        """Wall seconds of one step; its CPU seconds go to `cpu_times` (with one thread,
        time the scheduler gave other processes is not in them)."""
        t0, c0 = time.perf_counter(), time.thread_time()
        self.step(*batch)
        self.cpu_times.append(time.thread_time() - c0)
        return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--window", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--routes", default="loop,window,compile,jit")
    parser.add_argument(
        "--settle",
        type=int,
        default=1,
        help="untimed steps of a route before its timed one in each round",
    )
    parser.add_argument(
        "--part",
        choices=["model", "recurrence"],
        default="model",
        help="time the whole training step, or only the recurrence's forward and backward",
    )
    opts = parser.parse_args()
    # an empty inductor cache, so that the compile route's first steps hold a cold compile
    with tempfile.TemporaryDirectory(prefix="slstm-step-inductor-") as cache:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache
        measure(opts)


def measure(opts: argparse.Namespace) -> None:
    """Build every route, time them interleaved, print the table."""
    torch.set_num_threads(opts.threads)
    gen = torch.Generator().manual_seed(0)
    if opts.part == "model":
        x = torch.randint(0, VOCAB, (opts.batch, opts.window), generator=gen)  # (B, T)
        y = torch.randint(0, VOCAB, (opts.batch, opts.window), generator=gen)  # (B, T)
        batch = (x, y)
    else:
        hd = opts.hidden // opts.heads
        wx = torch.randn(opts.batch, opts.window, 4, opts.heads, hd, generator=gen)
        dy = torch.randn(opts.batch, opts.window, opts.hidden, generator=gen)  # (B, T, d)
        batch = (wx.requires_grad_(), dy)

    def model(cell: str):
        torch.manual_seed(0)
        return build_bench_model(cell, opts.hidden).train()

    def jit_route(net) -> Route:
        forget_gate = net.layers[0].config.forget_gate
        return Route("jit", net, traced_step(opts.batch, opts.hidden, opts.heads, forget_gate))

    makers = {
        "loop": lambda: Route("loop", model("slstm")),
        "window": lambda: Route("window", model("slstm"), window_function=True),
        "compile": lambda: Route(
            "compile", model("slstm"), torch.compile(slstm_module.slstm_step, dynamic=False)
        ),
        "jit": lambda: jit_route(model("slstm")),
    }
    routes = [Route(YARDSTICK, model(YARDSTICK))] if opts.part == "model" else []
    routes += [makers[name]() for name in opts.routes.split(",")]
    for route in routes:
        route.state = route.model.initial_state(opts.batch)
        if opts.part == "recurrence":
            route.step = route.recurrence_step
        # the first steps hold tracing and compiling; both graphs (fresh and carried state)
        route.first = [route.timed_step(*batch) for _ in range(3)]
        route.cpu_times.clear()
    for _ in range(opts.repeats):
        for route in routes:
            for _ in range(opts.settle):  # let the allocator reach this route's steady state
                route.step(*batch)
            route.times.append(route.timed_step(*batch))
    tokens = opts.batch * opts.window
    base = {r.name: tokens / statistics.median(r.times) for r in routes}
    print(
        f"sLSTM training ({opts.part}), d={opts.hidden} NH={opts.heads} B={opts.batch} T={opts.window}, "
        f"{opts.threads} thread(s), torch {torch.__version__}, median of {opts.repeats}"
    )
    cpu = {r.name: tokens / statistics.median(r.cpu_times) for r in routes}
    loop_times = next((r.times for r in routes if r.name == "loop"), None)
    print(
        f"{'route':<14} {'tok/s':>8} {'best':>8} {'x loop':>7} {'x LSTM':>7} {'paired':>7} "
        f"{'cpu tok/s':>10} {'x loop':>7} {'x LSTM':>7} {'peak MiB':>9} {'first s':>8}"
    )
    for route in routes:
        rate = base[route.name]
        with route.setup():
            peak = cpu_peak_allocated_bytes(lambda r=route: r.step(*batch)) / 2**20
        steady = statistics.median(route.times)
        extra = sum(route.first) - 3 * steady  # time the first steps took beyond steady state
        best = tokens / min(route.times)
        # median over rounds of the loop's time over this route's in the same round
        paired = (
            f"{statistics.median(a / b for a, b in zip(loop_times, route.times)):.2f}"
            if loop_times
            else "-"
        )
        print(
            f"{route.name:<14} {rate:>8,.0f} {best:>8,.0f} {_ratios(base, route.name)} {paired:>7} "
            f"{cpu[route.name]:>10,.0f} {_ratios(cpu, route.name)} {peak:>9.1f} {extra:>8.1f}"
        )


def _ratios(rates: dict[str, float], name: str) -> str:
    """'x loop' and 'x LSTM' columns of one route."""
    vs_loop = f"{rates[name] / rates['loop']:.2f}" if "loop" in rates else "-"
    vs_lstm = f"{rates[name] / rates[YARDSTICK]:.2f}" if YARDSTICK in rates else "-"
    return f"{vs_loop:>7} {vs_lstm:>7}"


if __name__ == "__main__":
    main()
