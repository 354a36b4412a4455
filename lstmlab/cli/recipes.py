"""`lstmlab recipes`: every recipe file with corpus, cell, parameter count, budget and source."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from lstmlab.cli.common import console, handle_errors
from lstmlab.cli.options import DataDirOpt


@handle_errors
def recipes_cmd(
    recipes_dir: Annotated[
        Path | None,
        typer.Option(
            help="Folder searched for *.yaml.",
            metavar="DIR",
            show_default="./recipes, else the package's",
        ),
    ] = None,
    data_dir: DataDirOpt = None,
) -> None:
    """List every recipe: corpus, cell(s), parameters, budget and where its values come from."""
    from lstmlab.catalog import default_recipes_dir, recipe_catalog

    root = recipes_dir or default_recipes_dir()
    table = Table(title=f"recipes in {root}", title_justify="left")
    for column in ("recipe", "corpus", "cell", "parameters", "budget", "source"):
        table.add_column(
            column,
            justify="right" if column == "parameters" else "left",
            no_wrap=column == "recipe",
        )
    for info in recipe_catalog(root, data_dir):
        count = f"{info.num_parameters:,}" if info.num_parameters is not None else "–"
        source = info.source or ""
        if info.problem:
            source = f"{source}\n[yellow]{info.problem}[/]".strip()
        table.add_row(
            info.path, info.corpus or "–", info.cells or "–", count, info.budget or "–", source
        )
    console.print(table)
