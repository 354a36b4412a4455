"""`lstmlab cells`: every registered cell, its paper, hyperparameters (described) and a parameter count."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from lstmlab.catalog import cell_catalog
from lstmlab.cli.common import console, handle_errors


@handle_errors
def cells_cmd(
    hidden: Annotated[
        int, typer.Option(help="hidden_dim for the parameter count.", metavar="INTEGER")
    ] = 256,
    embed_dim: Annotated[
        int, typer.Option(help="embed_dim for the parameter count.", metavar="INTEGER")
    ] = 64,
    layers: Annotated[
        int, typer.Option(help="num_layers for the parameter count.", metavar="INTEGER")
    ] = 2,
    vocab: Annotated[
        int,
        typer.Option(help="Vocabulary size (ptb 50, builtin 103, enwik8 256).", metavar="INTEGER"),
    ] = 50,
) -> None:
    """List every cell: paper, hyperparameters with type, default and meaning, and a parameter count."""
    table = Table(
        title=f"cells ({layers} layers, embed {embed_dim}, hidden {hidden}, vocabulary {vocab})",
        title_justify="left",
        show_lines=True,
    )
    table.add_column("cell")
    table.add_column("paper", max_width=36)
    table.add_column("hyperparameters: type = default, meaning", ratio=1)
    table.add_column("parameters", justify="right")
    for info in cell_catalog(
        hidden_dim=hidden, embed_dim=embed_dim, num_layers=layers, vocab_size=vocab
    ):
        params = "\n".join(
            f"[bold]{h.name}[/]: {escape(h.type)} = {escape(h.default)}\n  [dim]{escape(h.description)}[/]"
            for h in info.hyperparameters
        )
        count = f"{info.num_parameters:,}" if info.num_parameters is not None else info.problem
        table.add_row(info.name, f"{info.paper}\n[dim]{info.summary}[/]", params, count)
    console.print(table)
