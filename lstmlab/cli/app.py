"""The `lstmlab` Typer app: registers one thin command per module."""

from __future__ import annotations

from typing import Annotated

import typer

from lstmlab import __version__
from lstmlab.allocator import keep_freed_memory
from lstmlab.cli.bench import bench_cmd
from lstmlab.cli.cells import cells_cmd
from lstmlab.cli.compare import compare_cmd
from lstmlab.cli.eval import eval_cmd
from lstmlab.cli.export import export_cmd
from lstmlab.cli.options import CONTEXT_SETTINGS
from lstmlab.cli.prepare import prepare_cmd
from lstmlab.cli.push import push_cmd
from lstmlab.cli.recipes import recipes_cmd
from lstmlab.cli.runs import runs_cmd
from lstmlab.cli.sample import sample_cmd
from lstmlab.cli.score import score_cmd
from lstmlab.cli.train import train_cmd
from lstmlab.cli.tune import tune_cmd

app = typer.Typer(
    name="lstmlab",
    help="Character-level language modelling with recurrent networks: prepare, train, eval, sample.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings=CONTEXT_SETTINGS,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"lstmlab {__version__}")
        raise typer.Exit()


# Commands that run networks: they keep freed tensor memory in the process (allocator.py).
COMPUTE_COMMANDS = frozenset({"train", "tune", "eval", "sample", "score", "bench"})


@app.callback()
def root(
    ctx: typer.Context,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Show the version and exit."
        ),
    ] = False,
) -> None:
    """Character-level language modelling with recurrent networks."""
    if ctx.invoked_subcommand in COMPUTE_COMMANDS:
        keep_freed_memory()  # large tensors stop page-faulting in every step


app.command("prepare")(prepare_cmd)
app.command("train")(train_cmd)
app.command("tune")(tune_cmd)
app.command("eval")(eval_cmd)
app.command("sample")(sample_cmd)
app.command("score")(score_cmd)
app.command("export")(export_cmd)
app.command("push")(push_cmd)
app.command("runs")(runs_cmd)
app.command("bench")(bench_cmd)
app.command("compare")(compare_cmd)
app.command("cells")(cells_cmd)
app.command("recipes")(recipes_cmd)


def main() -> None:
    app()
