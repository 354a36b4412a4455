"""`lstmlab bench`: training, inference and sampling tokens/s and peak memory of every cell."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from lstmlab.cli.common import console, err_console, handle_errors
from lstmlab.errors import UsageError

if TYPE_CHECKING:
    from lstmlab.bench import BenchRow


def parse_int_list(text: str, option: str) -> tuple[int, ...]:
    """'256,512,1024' -> (256, 512, 1024); anything else is a one-line UsageError."""
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise UsageError(
            f"{option} takes comma-separated integers, got {text!r}", hint=f"e.g. {option} 256,512"
        ) from None


def _ratio(row: BenchRow, metric: str) -> str:
    from lstmlab.bench import YARDSTICK

    return f" ({row.ratios[metric]:.2f}×)" if row.ratios and row.cell != YARDSTICK else ""


@handle_errors
def bench_cmd(
    cells: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated registry keys.",
            metavar="CELL,...",
            show_default="every registered cell",
        ),
    ] = None,
    sizes: Annotated[
        str,
        typer.Option(
            help="Hidden sizes; the first is the reference, e.g. 512,256,1024.", metavar="N,..."
        ),
    ] = "512",
    windows: Annotated[
        str,
        typer.Option(
            help="Windows (T); the first is the reference, e.g. 128,512,2048.", metavar="N,..."
        ),
    ] = "128",
    batch_size: Annotated[int, typer.Option(help="Streams per batch (B).", metavar="INTEGER")] = 32,
    steps: Annotated[
        int, typer.Option(help="Timed steps per figure (median; >= 10).", metavar="INTEGER")
    ] = 10,
    warmup: Annotated[
        int, typer.Option(help="Untimed steps before timing.", metavar="INTEGER")
    ] = 3,
    device: Annotated[
        str,
        typer.Option(
            help="auto picks CUDA, then MPS, then the CPU; cuda:N picks a GPU.",
            metavar="[auto|cpu|cuda|cuda:N]",
        ),
    ] = "cpu",
    threads: Annotated[
        int | None,
        typer.Option(help="torch threads.", metavar="INTEGER", show_default="every usable core"),
    ] = None,
    out_dir: Annotated[
        Path, typer.Option(help="Folder for the JSON and markdown results.", metavar="DIR")
    ] = Path("benchmarks/results"),
) -> None:
    """Benchmark every registered cell against torch.nn.LSTM; writes JSON + markdown results.

    The first size and window are the reference point (default 512 and 128, batch 32,
    one layer, input = hidden, 256 symbols); other sizes are measured at the first
    window and other windows at the first size, giving two scaling curves.
    """
    from lstmlab.bench import METRICS, BenchSettings, run_benchmark, write_results

    settings = BenchSettings(
        cells=tuple(c.strip() for c in cells.split(",")) if cells else None,
        sizes=parse_int_list(sizes, "--sizes"),
        windows=parse_int_list(windows, "--windows"),
        batch_size=batch_size,
        steps=steps,
        warmup=warmup,
        device=device,
        threads=threads,
    )

    def show(row: BenchRow) -> None:
        err_console.print(
            f"[dim]{row.cell} H={row.hidden} T={row.window}: "
            f"train {row.train_tokens_per_s:,.0f} tok/s{_ratio(row, 'train_tokens_per_s')}[/]"
        )

    report = run_benchmark(settings, on_row=show)
    m = report.machine
    table = Table(
        title=f"{m.get('gpu') or m['cpu']} · {m['torch_threads']} threads · torch {m['torch']}"
    )
    for col in (
        "cell",
        "H",
        "T",
        "train tok/s",
        "infer tok/s",
        "sample tok/s",
        "peak MiB",
    ):
        table.add_column(col, justify="left" if col == "cell" else "right", no_wrap=col == "cell")
    for r in report.rows:
        figures = [
            f"{getattr(r, k):,.{1 if k == 'peak_mem_mb' else 0}f}{_ratio(r, k)}" for k in METRICS
        ]
        table.add_row(r.cell, str(r.hidden), str(r.window), *figures)
    console.print(table)
    json_path, md_path = write_results(report, out_dir)
    console.print(f"[dim]wrote {json_path} and {md_path}[/]")
