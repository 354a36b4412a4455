"""`lstmlab compare`: runs side by side (table, markdown, csv, json) and their learning curves."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.table import Table

from lstmlab import compare
from lstmlab.cli.common import console, err_console, handle_errors, print_table
from lstmlab.errors import UsageError
from lstmlab.plot import save_plot
from lstmlab.study import is_study_dir


def print_comparison(
    rows: Sequence[compare.RunRow], fmt: str = "table", *, title: str | None = None
) -> None:
    """The rich table (best row highlighted), or the text of another format on stdout."""
    if fmt != "table":
        console.print(compare.render(rows, fmt), markup=False, end="", soft_wrap=True)
        return
    corpora = {r.corpus for r in rows}
    # One corpus goes in the title: narrow terminals keep room for the numbers.
    keep = [h != "corpus" or len(corpora) > 1 for h in compare.headers()]
    if len(corpora) == 1:
        title = f"{title + ', ' if title else ''}corpus {next(iter(corpora))}"
    table = Table(
        title=title,
        title_justify="left",
        caption=compare.budget_note(rows),
        caption_justify="left",
    )
    for header, shown in zip(compare.headers(), keep):
        if shown:
            justify = "left" if header in compare.TEXT_HEADERS else "right"
            table.add_column(header, justify=justify, no_wrap=header == "run")
    for index, row in enumerate(rows):
        best = index == 0 and row.best_valid_bpc is not None
        style = "bold green" if best else ("yellow" if row.state != "finished" else None)
        table.add_row(*(c for c, shown in zip(compare.text_cells(row), keep) if shown), style=style)
    print_table(table)
    groups = compare.seed_groups(rows)
    if groups:
        print_groups(groups)


def print_groups(groups: Sequence[compare.GroupRow]) -> None:
    """Runs of one recipe over several seeds: mean ± sd and n, and what the seeds cannot separate."""
    table = Table(
        title="by recipe over seeds (mean ± sd)",
        title_justify="left",
        caption=compare.groups_note(groups),
        caption_justify="left",
    )
    for header in compare.GROUP_HEADERS:
        left = header in ("recipe", "cell", "not resolved from")
        table.add_column(header, justify="left" if left else "right")
    for g in groups:
        table.add_row(*compare.group_cells(g))
    print_table(table)


@handle_errors
def compare_cmd(
    paths: Annotated[
        list[Path],
        typer.Argument(
            help="Run folders, or folders of runs (every run inside).",
            metavar="RUN...",
            show_default=False,
        ),
    ],
    format: Annotated[
        Literal["table", "markdown", "csv", "json"],
        typer.Option(
            "--format",
            "-f",
            help="table, markdown (for a README), csv or json.",
            metavar="[table|markdown|csv|json]",
        ),
    ] = "table",
    plot: Annotated[
        Path | None,
        typer.Option(
            help="Also write learning curves (valid bpc vs tokens and time) to this PNG.",
            metavar="FILE",
        ),
    ] = None,
    allow_mixed: Annotated[
        bool, typer.Option(help="Compare runs trained on different corpora.", metavar="")
    ] = False,
    context: Annotated[
        bool,
        typer.Option(
            help="Markdown only: start with a line naming date, machine, corpus, budget.",
            metavar="",
        ),
    ] = False,
) -> None:
    """Compare runs: one row each, sorted by best valid bpc; in-progress and crashed runs are shown."""
    if context and format != "markdown":
        raise UsageError("--context goes with --format markdown", hint="drop --context")
    from lstmlab.runs import resolve_run

    if any(is_study_dir(p) for p in paths):
        return _compare_study(paths, format, plot)
    rows, warnings = compare.collect([resolve_run(p) for p in paths], allow_mixed=allow_mixed)
    for warning in warnings:
        err_console.print(f"[yellow]warning:[/] {warning}", soft_wrap=True)
    if context and format == "markdown":
        console.print(compare.context_note(rows) + "\n", markup=False, soft_wrap=True)
    print_comparison(rows, format)
    if plot is not None:
        err_console.print(f"[dim]wrote {save_plot(rows, plot)}[/]")


def _compare_study(paths: list[Path], fmt: str, plot: Path | None) -> None:
    """A study folder (lstmlab tune): its trials, and the trials' curves with --plot."""
    from lstmlab.cli.tune import print_study
    from lstmlab.study import read_trials, trial_run_dirs

    if len(paths) > 1:
        raise UsageError(
            "a study folder is compared on its own", hint="pass one study folder to compare"
        )
    rows = read_trials(paths[0])
    if not rows:
        raise UsageError(f"study {paths[0]} has no trial yet", hint="run `lstmlab tune` first")
    print_study(rows, fmt, title=f"study {paths[0]}")
    if plot is not None:
        runs_rows, _warnings = compare.collect(trial_run_dirs(rows))
        err_console.print(f"[dim]wrote {save_plot(runs_rows, plot)}[/]")
