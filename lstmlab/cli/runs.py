"""`lstmlab runs`: the run folders under a folder, newest first."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lstmlab.cli.common import console, handle_errors, print_table


@handle_errors
def runs_cmd(
    folder: Annotated[
        Path, typer.Argument(help="Folder holding run folders.", metavar="DIR")
    ] = Path("runs"),
) -> None:
    """List run folders (name, cell, corpus, state, step, best valid bpc), newest first.

    `latest` stands for the first one wherever a run folder is expected.
    """
    from rich.table import Table

    from lstmlab.compare import read_run
    from lstmlab.runs import list_runs

    found = list_runs(folder)
    if not found:
        console.print(f"no run folders in {folder}/", markup=False)
        return
    table = Table(title=f"runs in {folder}/ (newest first)", title_justify="left")
    for header in ("run", "cell", "corpus", "state", "step", "best valid bpc"):
        table.add_column(
            header,
            justify="left" if header in ("run", "cell", "corpus", "state") else "right",
            no_wrap=True,
        )
    for run_dir in found:
        try:
            row = read_run(run_dir)
        except Exception as exc:  # a damaged run is listed, not fatal
            table.add_row(run_dir.name, "?", "?", f"unreadable ({type(exc).__name__})", "", "")
            continue
        bpc = "–" if row.best_valid_bpc is None else f"{row.best_valid_bpc:.4f}"
        step = "–" if row.step is None else f"{row.step:,}"
        table.add_row(row.name, row.cells or "?", row.corpus or "?", row.state, step, bpc)
    print_table(table)
