"""`lstmlab cells`: every registered cell, its paper, hyperparameters (described) and a parameter count."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

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
    params: Annotated[
        str | None,
        typer.Option(
            help="A parameter budget (1M, 250k, 24M): size each cell's hidden_dim to fit it.",
            metavar="COUNT",
            show_default=False,
        ),
    ] = None,
) -> None:
    """List every cell: paper, hyperparameters with type, default and meaning, and a parameter count.

    With --params, each cell's hidden_dim is the widest whose model fits the budget
    (equal parameters by construction), and the count is that model's exact size.
    """
    from lstmlab.catalog import cell_catalog

    if params is not None:
        return _sized_cells(params, embed_dim, layers, vocab)
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


def _sized_cells(params: str, embed_dim: int, layers: int, vocab: int) -> None:
    """Each cell at the widest hidden_dim within the parameter budget."""
    from lstmlab.cells.configs import CELL_CONFIGS
    from lstmlab.config import ModelConfig
    from lstmlab.errors import UsageError
    from lstmlab.sizing import fit_hidden_dim, parse_count

    try:
        budget = parse_count(params)
    except ValueError as exc:
        raise UsageError(f"--params: {exc}", hint="e.g. --params 1M or --params 250k") from None
    table = Table(
        title=f"cells within {budget:,} parameters ({layers} layers, embed {embed_dim}, "
        f"vocabulary {vocab})",
        title_justify="left",
    )
    for header in ("cell", "hidden_dim", "parameters", "of budget"):
        table.add_column(header, justify="left" if header == "cell" else "right", no_wrap=True)
    for config in CELL_CONFIGS:
        kind = config.model_fields["kind"].default
        model = ModelConfig.model_validate(
            {"embed_dim": embed_dim, "num_layers": layers, "cell": {"kind": kind, "hidden_dim": 64}}
        )
        sized, count = fit_hidden_dim(model, vocab, budget)
        table.add_row(kind, str(sized.cell.hidden_dim), f"{count:,}", f"{count / budget:.1%}")
    console.print(table)
