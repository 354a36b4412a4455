"""`lstmlab eval`: a thin layer over `evaluate.evaluate_run` and `evaluate.write_eval`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

import typer
from rich.markup import escape
from rich.table import Table

from lstmlab.cli.checkpoint_option import CheckpointChoiceOpt
from lstmlab.cli.common import RichProgress, console, handle_errors, print_table
from lstmlab.cli.options import DataDirOpt, DeviceOpt, RunArg
from lstmlab.runs import resolve_run, run_dir_of

if TYPE_CHECKING:
    from lstmlab.evaluate import EvalReport


SplitOpt = Annotated[Literal["valid", "test", "all"], typer.Option(help="Which split(s) to score.")]
BatchSizeOpt = Annotated[
    int | None, typer.Option(help="Parallel streams (default: the recipe's eval.batch_size).")
]
DynamicOpt = Annotated[
    bool,
    typer.Option(
        "--dynamic",
        help="Also score with dynamic evaluation (Krause et al. 2018, arXiv:1709.07432).",
    ),
]
DynLrOpt = Annotated[
    float | None, typer.Option(help="Dynamic eval learning rate η (eval.dynamic.lr).")
]
DynDecayOpt = Annotated[
    float | None, typer.Option(help="Dynamic eval decay λ toward the trained weights.")
]
SegmentLenOpt = Annotated[
    int | None, typer.Option(help="Dynamic eval: tokens scored before each update.")
]
MsTokensOpt = Annotated[
    int | None,
    typer.Option(help="Dynamic eval: training tokens for the gradient statistics (all)."),
]
TuneTemperatureOpt = Annotated[
    bool | None,
    typer.Option(
        "--tune-temperature/--no-tune-temperature",
        help="Search the softmax temperature in [0.8, 1.0] on valid and also report test bpc with it "
        "(default: the recipe's eval.tune_temperature).",
    ),
]


@handle_errors
def eval_cmd(
    run: RunArg,
    split: SplitOpt = "test",
    checkpoint: CheckpointChoiceOpt = "best",
    batch_size: BatchSizeOpt = None,
    data_dir: DataDirOpt = None,
    device: DeviceOpt = "auto",
    dynamic: DynamicOpt = False,
    dyn_lr: DynLrOpt = None,
    dyn_decay: DynDecayOpt = None,
    segment_len: SegmentLenOpt = None,
    ms_tokens: MsTokensOpt = None,
    tune_temperature: TuneTemperatureOpt = None,
) -> None:
    """Evaluate a run on valid/test: bits per character and per-character perplexity; writes eval.json.

    With --dynamic each split is also scored with dynamic evaluation (gradient
    statistics from the train split, then batch-1 segments, each scored before
    the weights adapt to it); eval.json records both figures. eval.json holds
    one checkpoint's results: evaluating another checkpoint replaces it.
    """
    from lstmlab.evaluate import evaluate_run, write_eval

    report = evaluate_run(
        resolve_run(run),
        splits=("valid", "test") if split == "all" else (split,),
        checkpoint=checkpoint,
        batch_size=batch_size,
        data_dir=data_dir,
        device=device,
        dynamic=dynamic,
        dynamic_overrides={
            "lr": dyn_lr,
            "decay": dyn_decay,
            "segment_len": segment_len,
            "ms_tokens": ms_tokens,
        },
        tune_temperature=tune_temperature,
        progress=RichProgress(),
    )
    print_table(report_table(report))
    if report.tuned is not None:
        t = report.tuned
        console.print(
            f"temperature {t.temperature:.2f} (best on valid, grid 0.80-1.00): "
            f"valid bpc {t.valid_bpc[t.temperature]:.4f}; test bpc {t.test_bpc_tuned:.4f} "
            f"(at {t.untuned_temperature:g}: {t.test_bpc_untuned:.4f})"
        )
    if report.which == "export":  # an export or a Hub snapshot is read-only: nothing is written
        console.print(
            f"[dim]{escape(str(report.checkpoint))} is an export: eval.json not written[/]"
        )
        return
    out = write_eval(run_dir_of(report.checkpoint), report)
    console.print(f"[dim]wrote {escape(str(out))}[/]")


def report_table(report: EvalReport) -> Table:
    """One row per split: tokens, bpc, perplexity, seconds (and the dynamic figures when measured)."""
    step = f" (step {report.step})" if report.step is not None else ""
    table = Table(title=escape(f"{report.checkpoint}{step}"))
    dynamic = any(s.dynamic is not None for s in report.splits.values())
    columns = ["split", "tokens", "bpc", "perplexity (char)", "seconds"]
    columns += ["dynamic bpc", "gain", "dynamic seconds"] if dynamic else []
    for col in columns:
        table.add_column(col, justify="left" if col == "split" else "right")
    for name, s in report.splits.items():
        r = s.result
        row = [name, f"{r.tokens:,}", f"{r.bpc:.4f}", f"{r.perplexity:.4f}", f"{s.seconds:.1f}"]
        if s.dynamic is not None:
            gain = r.bpc - s.dynamic.bpc
            row += [f"{s.dynamic.bpc:.4f}", f"{gain:+.4f}", f"{s.dynamic_seconds:.1f}"]
        table.add_row(*row)
    return table
