"""Throughput benchmark: tokens/s and peak memory of every registered cell, against torch.nn.LSTM.

Each measured network is a full language model — embedding (V → E), one
recurrent layer (E → H, input = hidden), linear head (H → V) — over random
ids of a V = 256 symbol vocabulary, so every cell pays the same embedding
and softmax. The yardstick is bare torch.nn.LSTM (its fused kernel) wrapped
with the same embedding and head, measured in the same process at the same
size, and every figure is also given as a ratio to it.

Per point (hidden size H, window T) every network is built, and each figure is
timed interleaved: `warmup` untimed rounds, then `steps` rounds that call each
network once in turn, so load from other processes on a shared machine falls
on the yardstick and the cells alike. Per network, the median over the rounds of:
    training   tokens/s = B·T / (forward + cross-entropy + backward + Adam step + zero_grad)
    inference  tokens/s = B·T / (no_grad forward of one window, state carried)
    sampling   tokens/s = B·k / (k greedy T = 1 steps of all B streams, state carried, k = 16)
and the peak memory of one training step: on CPU the bytes torch holds
(parameters, Adam moments, carried state) plus the highest net allocation
inside the step, read from torch.profiler's allocation events; on CUDA
torch.cuda.max_memory_allocated over the step.

The cells come from `lstmlab.cells.CELLS`, so a new cell is benchmarked as
soon as it is registered. Its reference config is `CELLS[kind].config` with
`hidden_dim` plus the paper settings in `PAPER_SETTINGS`; a key the config
does not have is ignored.

Shapes: B batch (streams), T window, E input size (= H), H hidden size, V vocabulary.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import re
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lstmlab import allocator
from lstmlab.cells import CELLS, detach_state
from lstmlab.config import ModelConfig
from lstmlab.device import cpu_model, resolve_device
from lstmlab.errors import UsageError
from lstmlab.model import build_model

YARDSTICK = "torch.nn.LSTM"
VOCAB_SIZE = 256
SAMPLE_BLOCK = 16  # T = 1 steps per timed sampling call, so one call is well above timer noise

# Published sizes used at the reference point (paper settings, applied only to registered kinds).
PAPER_SETTINGS: dict[str, dict] = {
    "mogrifier": {"rounds": 5, "rank": 32},  # Melis et al. 2020, arXiv:1909.01792
    "slstm": {"num_heads": 4},  # Beck et al. 2024, arXiv:2405.04517
    "mlstm": {"num_heads": 4},
}

METRICS = ("train_tokens_per_s", "infer_tokens_per_s", "sample_tokens_per_s", "peak_mem_mb")


@dataclass(frozen=True)
class BenchSettings:
    """What to measure. The first size and the first window are the reference point; the
    other sizes are measured at the first window and the other windows at the first size."""

    cells: tuple[str, ...] | None = None  # None: every registered cell
    sizes: tuple[int, ...] = (512,)
    windows: tuple[int, ...] = (128,)
    batch_size: int = 32
    steps: int = 10
    warmup: int = 3
    device: str = "cpu"
    threads: int | None = None  # None: all cores this process may use
    seed: int = 0

    def points(self) -> list[tuple[int, int]]:
        """(hidden, window) pairs: two one-dimensional curves through the reference point."""
        ref_hidden, ref_window = self.sizes[0], self.windows[0]
        points = [(h, ref_window) for h in self.sizes]
        points += [(ref_hidden, w) for w in self.windows[1:]]
        return list(dict.fromkeys(points))


@dataclass
class BenchRow:
    cell: str  # registry key, or YARDSTICK
    hidden: int
    window: int
    batch_size: int
    device: str
    parameters: int
    config: dict
    train_tokens_per_s: float
    infer_tokens_per_s: float
    sample_tokens_per_s: float
    peak_mem_mb: float
    ratios: dict[str, float] = field(default_factory=dict)  # metric / the yardstick's, same point


@dataclass
class BenchReport:
    machine: dict
    settings: dict
    rows: list[BenchRow]
    created: str

    def to_dict(self) -> dict:
        return {
            "created": self.created,
            "machine": self.machine,
            "settings": self.settings,
            "yardstick": YARDSTICK,
            "rows": [asdict(r) for r in self.rows],
        }


# ---------------------------------------------------------------- models


class TorchLSTMLanguageModel(nn.Module):
    """The yardstick: embedding -> bare torch.nn.LSTM -> head, with LanguageModel's call shape."""

    def __init__(self, hidden: int, vocab_size: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, hidden)
        self.lstm = nn.LSTM(hidden, hidden, num_layers=1, batch_first=True)
        self.head = nn.Linear(hidden, vocab_size)

    def initial_state(self, batch_size: int, device=None, dtype=torch.float32):
        zeros = torch.zeros(1, batch_size, self.lstm.hidden_size, device=device, dtype=dtype)
        return (zeros, zeros.clone())  # (1, B, H) each

    def forward(self, ids: Tensor, state) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        y, state = self.lstm(self.embedding(ids), state)  # (B, T, H)
        return self.head(y), state  # (B, T, V)


def reference_cell_config(kind: str, hidden: int) -> dict:
    """`CELLS[kind].config` at `hidden` with its paper settings, as a plain dict."""
    config_cls = CELLS[kind].config
    fields = config_cls.model_fields
    settings = {k: v for k, v in PAPER_SETTINGS.get(kind, {}).items() if k in fields}
    return config_cls(hidden_dim=hidden, **settings).model_dump(mode="json")


def build_bench_model(cell: str, hidden: int, vocab_size: int = VOCAB_SIZE) -> nn.Module:
    """One layer, input = hidden, over `vocab_size` symbols; `cell` is a registry key or YARDSTICK."""
    if cell == YARDSTICK:
        return TorchLSTMLanguageModel(hidden, vocab_size)
    cfg = ModelConfig.model_validate(
        {"embed_dim": hidden, "num_layers": 1, "cell": reference_cell_config(cell, hidden)}
    )
    return build_model(cfg, vocab_size)


# ---------------------------------------------------------------- timing and memory


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved_median_seconds(
    fns: Sequence[Callable[[], object]], *, warmup: int, steps: int, device: torch.device
) -> list[float]:
    """Median wall time of each function over `steps` rounds, after `warmup` untimed rounds.

    A round calls every function once, in turn, so load from other processes (on a
    shared machine it comes and goes over seconds) falls on every function alike and
    their ratios stay put even when the absolute figures drift; each round starts one
    function later than the one before, so no function always runs first.
    """
    for _ in range(warmup):
        for fn in fns:
            fn()
    times: list[list[float]] = [[] for _ in fns]
    for round_ in range(steps):
        for place in range(len(fns)):
            k = (place + round_) % len(fns)  # each round starts one later: no fixed first place
            _synchronize(device)
            t0 = time.perf_counter()
            fns[k]()
            _synchronize(device)
            times[k].append(time.perf_counter() - t0)
    return [statistics.median(own) for own in times]


def cpu_peak_allocated_bytes(fn: Callable[[], object]) -> int:
    """Highest net number of bytes torch allocated on the CPU during `fn()`, above the start.

    Reads the allocation (+) and free (−) events of torch.profiler in time
    order; tensors alive before the call are not counted.
    """
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = [
        e
        for e in prof.profiler.kineto_results.events()
        if e.name() == "[memory]" and e.device_type() == DeviceType.CPU
    ]
    live = peak = 0
    for event in sorted(events, key=lambda e: e.start_ns()):
        live += event.nbytes()
        peak = max(peak, live)
    return peak


def _tensor_bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors if isinstance(t, Tensor))


def _held_bytes(model: nn.Module, optimizer: torch.optim.Optimizer, state) -> int:
    """Bytes alive between training steps: parameters, optimizer moments, carried state."""
    optim_tensors = [v for s in optimizer.state.values() for v in s.values()]
    return (
        _tensor_bytes(model.parameters())
        + _tensor_bytes(optim_tensors)
        + _tensor_bytes(state_tensors(state))
    )


def state_tensors(state) -> list[Tensor]:
    """Every tensor in a (nested) state."""
    if isinstance(state, Tensor):
        return [state]
    return [t for s in state for t in state_tensors(s)]


# ---------------------------------------------------------------- one measurement


@dataclass
class _Subject:
    """One network at one point, with its three timed calls."""

    cell: str
    model: nn.Module
    optimizer: torch.optim.Optimizer
    carried: dict
    train_step: Callable[[], None]
    infer_step: Callable[[], None]
    sample_block: Callable[[], None]


def _subject(
    cell: str, hidden: int, window: int, settings: BenchSettings, device: torch.device
) -> _Subject:
    torch.manual_seed(settings.seed)
    model = build_bench_model(cell, hidden).to(device)
    batch = settings.batch_size
    gen = torch.Generator().manual_seed(settings.seed)
    x = torch.randint(0, VOCAB_SIZE, (batch, window), generator=gen).to(device)  # (B, T)
    y = torch.randint(0, VOCAB_SIZE, (batch, window), generator=gen).to(device)  # (B, T)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    carried = {"state": model.initial_state(batch, device=device), "ids": x[:, :1]}

    def train_step() -> None:
        state = detach_state(carried["state"])
        logits, state = model(x, state)  # (B, T, V)
        loss = F.cross_entropy(logits.reshape(-1, VOCAB_SIZE), y.reshape(-1))  # (B·T, V)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        carried["state"] = state

    @torch.no_grad()
    def infer_step() -> None:
        _, carried["state"] = model(x, carried["state"])

    @torch.no_grad()
    def sample_block() -> None:
        state, ids = carried["state"], carried["ids"]  # ids (B, 1)
        for _ in range(SAMPLE_BLOCK):
            logits, state = model(ids, state)  # (B, 1, V)
            ids = logits[:, -1].argmax(dim=-1, keepdim=True)  # (B, 1)
        carried["state"], carried["ids"] = state, ids

    return _Subject(cell, model, optimizer, carried, train_step, infer_step, sample_block)


def measure_point(
    cells: Sequence[str], hidden: int, window: int, settings: BenchSettings, device: torch.device
) -> list[BenchRow]:
    """Training, inference and sampling tokens/s and training peak memory of every network in
    `cells` at one (hidden, window), each figure timed interleaved across the networks."""
    subjects = [_subject(cell, hidden, window, settings, device) for cell in cells]
    timing = {"warmup": settings.warmup, "steps": settings.steps, "device": device}
    for s in subjects:
        s.model.train()
    train_s = interleaved_median_seconds([s.train_step for s in subjects], **timing)
    peaks = [
        _peak_training_bytes(s.train_step, s.model, s.optimizer, s.carried, device)
        for s in subjects
    ]
    for s in subjects:
        s.model.eval()
    infer_s = interleaved_median_seconds([s.infer_step for s in subjects], **timing)
    sample_s = interleaved_median_seconds([s.sample_block for s in subjects], **timing)
    batch = settings.batch_size
    rows = []
    for k, s in enumerate(subjects):
        config = (
            {"kind": YARDSTICK, "hidden_dim": hidden}
            if s.cell == YARDSTICK
            else reference_cell_config(s.cell, hidden)
        )
        rows.append(
            BenchRow(
                cell=s.cell,
                hidden=hidden,
                window=window,
                batch_size=batch,
                device=str(device),
                parameters=sum(p.numel() for p in s.model.parameters()),
                config=config,
                train_tokens_per_s=batch * window / train_s[k],
                infer_tokens_per_s=batch * window / infer_s[k],
                sample_tokens_per_s=batch * SAMPLE_BLOCK / sample_s[k],
                peak_mem_mb=peaks[k] / 2**20,
            )
        )
    return rows


def _peak_training_bytes(train_step, model, optimizer, carried, device: torch.device) -> int:
    previous = carried["state"]  # freed only after profiling: its free event would be unmatched
    held = _held_bytes(model, optimizer, previous)
    if device.type == "cuda":
        # Other networks of the same point live on the device too: count only what this
        # step allocates above the start, plus this network's own held bytes.
        _synchronize(device)
        start = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        train_step()
        _synchronize(device)
        return held + torch.cuda.max_memory_allocated(device) - start
    peak = held + cpu_peak_allocated_bytes(train_step)
    del previous
    return peak


def add_ratios(rows: Sequence[BenchRow]) -> None:
    """Fill each row's ratios to the yardstick row at the same (hidden, window)."""
    yardsticks = {(r.hidden, r.window): r for r in rows if r.cell == YARDSTICK}
    for row in rows:
        base = yardsticks.get((row.hidden, row.window))
        if base is None:
            continue
        row.ratios = {m: getattr(row, m) / getattr(base, m) for m in METRICS}


# ---------------------------------------------------------------- the whole run


def describe_machine(device: torch.device, threads: int) -> dict:
    """CPU model, cores, torch version and threads (and the GPU on CUDA), for the results file."""
    info = {
        "cpu": cpu_model(),
        "logical_cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "torch_threads": threads,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "keep_freed_memory": allocator.applied(),  # glibc thresholds raised (lstmlab.allocator)
        "device": str(device),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
        info["cudnn"] = torch.backends.cudnn.version()
    return info


def check_settings(settings: BenchSettings) -> list[str]:
    """The cells to run, after checking every setting (UsageError on the first bad one)."""
    cells = list(settings.cells) if settings.cells else sorted(CELLS)
    unknown = [c for c in cells if c not in CELLS]
    if unknown:
        raise UsageError(
            f"unknown cell(s): {', '.join(unknown)}", hint=f"choose from {', '.join(sorted(CELLS))}"
        )
    for name, values in (("--sizes", settings.sizes), ("--windows", settings.windows)):
        if not values or any(v < 1 for v in values):
            raise UsageError(f"{name} needs positive integers, got {list(values)}")
    if settings.batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {settings.batch_size}")
    if settings.steps < 10:
        raise UsageError(
            f"--steps must be >= 10, got {settings.steps}", hint="the median is over >= 10 steps"
        )
    if settings.warmup < 1:
        raise UsageError(f"--warmup must be >= 1, got {settings.warmup}")
    if settings.threads is not None and settings.threads < 1:
        raise UsageError(f"--threads must be >= 1, got {settings.threads}")
    return cells


def run_benchmark(
    settings: BenchSettings, on_row: Callable[[BenchRow], None] | None = None
) -> BenchReport:
    """Measure the yardstick and every chosen cell at every point; rows carry their ratios."""
    cells = check_settings(settings)
    device = resolve_device(settings.device)
    threads = settings.threads or (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    )
    machine = describe_machine(device, threads)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    rows: list[BenchRow] = []
    try:
        for hidden, window in settings.points():
            point = measure_point([YARDSTICK, *cells], hidden, window, settings, device)
            rows.extend(point)
            add_ratios(rows)
            for row in point if on_row else ():
                on_row(row)
    finally:
        torch.set_num_threads(previous_threads)
    stamp = dt.datetime.now().astimezone().isoformat(timespec="seconds")
    recorded = {**asdict(settings), "cells": cells, "threads": threads}
    recorded.update({"vocab_size": VOCAB_SIZE, "sample_block": SAMPLE_BLOCK, "dtype": "float32"})
    return BenchReport(machine=machine, settings=recorded, rows=rows, created=stamp)


# ---------------------------------------------------------------- results files


def results_stem(report: BenchReport) -> str:
    """`<device>-<cpu or gpu model>-<cores>c-<date>T<time>`, lower case, safe for a file name."""
    machine = report.machine
    model = machine.get("gpu") or machine["cpu"]
    slug = re.sub(r"[^a-z0-9]+", "-", model.lower()).strip("-")[:40]
    when = report.created[:16].replace(":", "")  # YYYY-MM-DDTHHMM
    device = machine["device"].split(":")[0]
    return f"{device}-{slug}-{machine['usable_cores']}c-{when}"


def markdown(report: BenchReport) -> str:
    """The results as a markdown page: machine, settings, one table row per measurement."""
    m, s = report.machine, report.settings
    lines = [
        f"# Throughput, {report.created}",
        "",
        f"- machine: {m.get('gpu') or m['cpu']}, {m['usable_cores']} usable cores "
        f"({m['logical_cores']} logical), torch {m['torch']} with {m['torch_threads']} threads, "
        f"Python {m['python']}, {m['platform']}",
        f"- load average at start: {m['load_average_at_start']}; glibc keeps freed memory "
        f"(lstmlab.allocator): {'yes' if m.get('keep_freed_memory') else 'no'}",
        f"- device {m['device']}, float32, batch {s['batch_size']}, vocabulary {s['vocab_size']}, "
        f"one layer with input = hidden; median of {s['steps']} rounds after {s['warmup']} warm-up "
        "rounds, each round timing one call of every network at the point in turn (interleaved)",
        f"- sampling: greedy T = 1 steps of all {s['batch_size']} streams, "
        f"{s['sample_block']} steps per timed call",
        f"- ratios are to {YARDSTICK} (same embedding and head) at the same size, in the same run",
        "",
        "| cell | hidden | window | params | train tok/s | infer tok/s | sample tok/s "
        "| peak MiB | train × | infer × | sample × | mem × |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report.rows:
        q = r.ratios
        lines.append(
            f"| {r.cell} | {r.hidden} | {r.window} | {r.parameters:,} | {r.train_tokens_per_s:,.0f} "
            f"| {r.infer_tokens_per_s:,.0f} | {r.sample_tokens_per_s:,.0f} | {r.peak_mem_mb:,.1f} "
            + " ".join(f"| {q[k]:.2f}" if q else "| –" for k in METRICS)
            + " |"
        )
    return "\n".join(lines) + "\n"


def write_results(report: BenchReport, out_dir: Path) -> tuple[Path, Path]:
    """Write `<stem>.json` and `<stem>.md` into `out_dir` (created if absent)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = results_stem(report)
    json_path, md_path = out_dir / f"{stem}.json", out_dir / f"{stem}.md"
    json_path.write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
    md_path.write_text(markdown(report), encoding="utf-8")
    return json_path, md_path


__all__ = [
    "PAPER_SETTINGS",
    "YARDSTICK",
    "BenchReport",
    "BenchRow",
    "BenchSettings",
    "TorchLSTMLanguageModel",
    "add_ratios",
    "build_bench_model",
    "cpu_peak_allocated_bytes",
    "markdown",
    "measure_point",
    "reference_cell_config",
    "run_benchmark",
    "write_results",
]
