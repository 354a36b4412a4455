"""`lstmlab tune`: search a recipe's `tune:` space with Optuna, one run folder per trial."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from lstmlab.cli.common import (
    RichProgress,
    console,
    err_console,
    exit_now,
    fail,
    handle_errors,
    print_table,
)
from lstmlab.cli.options import DeviceOpt, SetOpt
from lstmlab.errors import UsageError


def _params_text(params: dict) -> str:
    return "  ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items()
    )


def print_tune_event(record: dict) -> None:
    """One line per trial as it starts and ends; the trial's training as `train` prints it."""
    from lstmlab.cli.train import print_event

    kind = record.get("kind")
    if kind == "trial_start":
        err_console.print(
            f"[bold]trial {record['number']}[/]  {escape(_params_text(record['params']))}  "
            f"[dim]-> {escape(record['run'])}[/]",
            soft_wrap=True,
        )
    elif kind == "trial_end":
        state, value = record["state"], record["value"]
        if state == "complete":
            result = f"valid bpc {value:.4f}"
        elif state == "pruned":
            result = f"pruned at {record['tokens']:,} tokens (valid bpc {value:.4f})"
        else:
            result = f"failed: {record['reason']}"
        best = (
            f"best: trial {record['best_number']}, {record['best_value']:.4f}"
            if record["best_number"] is not None
            else "no complete trial yet"
        )
        err_console.print(
            f"[bold]trial {record['number']}[/] {escape(result)}  [dim]({best})[/]", soft_wrap=True
        )
    else:
        print_event(record)


def print_study(rows, fmt: str = "table", *, title: str | None = None) -> None:
    """A study's trials: the rich table (best in green, marked *), or markdown, csv, json text."""
    from lstmlab import study

    if fmt != "table":
        console.print(study.render(rows, fmt), markup=False, end="", soft_wrap=True)
        return
    table = Table(title=title, title_justify="left")
    names = study.param_names(rows)
    for header in study.headers(rows):
        left = header in ("state", "note") or header in names and not _numeric(rows, header)
        table.add_column(header, justify="left" if left else "right")
    for row in rows:
        style = "bold green" if row.best else ("yellow" if row.state != "complete" else None)
        table.add_row(*study.text_cells(row, names), style=style)
    print_table(table)


def _numeric(rows, name: str) -> bool:
    return all(isinstance(r.params.get(name, 0), (int, float)) for r in rows)


@handle_errors
def tune_cmd(
    recipe: Annotated[
        Path,
        typer.Argument(
            help="YAML recipe with a `tune:` block (the search space).",
            metavar="RECIPE",
            show_default=False,
        ),
    ],
    trials: Annotated[
        int,
        typer.Option(
            min=1,
            metavar="INTEGER",
            help="Trials the study holds when done, counting those of earlier sessions.",
        ),
    ],
    study_dir: Annotated[
        Path | None,
        typer.Option(
            help="The study folder (study.db, trial-NNNN/ run folders, best.yaml).",
            metavar="DIR",
            show_default="runs/tune-<recipe>",
        ),
    ] = None,
    overrides: SetOpt = None,
    timeout: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            metavar="MINUTES",
            help="Start no trial after this many minutes (the running one finishes).",
            show_default=False,
        ),
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option(
            min=0,
            metavar="INTEGER",
            help="Seed of the sampler (trials train with the recipe's seed).",
            show_default="0, or the study's own when continuing",
        ),
    ] = None,
    device: DeviceOpt = "auto",
) -> None:
    """Tune a recipe's hyperparameters with Optuna (TPE, median pruning); each trial is a run.

    Running the same command again continues the study until --trials are done;
    the best trial is written out as a recipe, <study-dir>/best.yaml.
    """
    from lstmlab.catalog import find_recipe
    from lstmlab.device import resolve_device
    from lstmlab.study import require_optuna
    from lstmlab.tune import run_study

    optuna = require_optuna()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the command prints the trials itself
    try:
        result = run_study(
            find_recipe(recipe),
            trials=trials,
            study_dir=study_dir,
            overrides=overrides or [],
            timeout_min=timeout,
            seed=seed,
            device=resolve_device(device),
            progress=RichProgress(),
            on_event=print_tune_event,
        )
    except KeyboardInterrupt:  # between trials, or a second Ctrl-C: the storage is transactional
        fail(
            UsageError(
                "tuning stopped at once by Ctrl-C; the study and its finished trials are kept, "
                "and a trial it interrupted runs first when the study continues",
                hint="continue with the same `lstmlab tune` command",
            )
        )
        exit_now(130)
    print_study(result.trials, title=f"study {result.study_dir}")
    if result.stopped == "timeout":
        err_console.print(f"[yellow]--timeout {timeout:g} min passed; no further trial started[/]")
    if result.best_recipe is not None:
        path = escape(str(result.best_recipe))
        console.print(
            f"best trial {result.best.number}: {path}; next: [bold]lstmlab train {path}[/]"
        )
