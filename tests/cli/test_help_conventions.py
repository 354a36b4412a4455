"""--help conventions: `-h`, conventional metavars, one default style (cli/options.py)."""

from __future__ import annotations

import re

import typer
from typer.testing import CliRunner

from lstmlab.cli.app import app
from lstmlab.cli.options import (
    CONTEXT_SETTINGS,
    FLAG,
    CheckpointOpt,
    DataDirOpt,
    DeviceOpt,
    RunArg,
    SetOpt,
)

runner = CliRunner()


def _tiny_app() -> typer.Typer:
    """An app built as lstmlab's is, with every shared option type."""
    tiny = typer.Typer(context_settings=CONTEXT_SETTINGS, rich_markup_mode="rich")

    @tiny.callback()
    def root() -> None:
        """Root."""

    @tiny.command("go")
    def go(
        run: RunArg,
        overrides: SetOpt = None,
        device: DeviceOpt = "auto",
        checkpoint: CheckpointOpt = "best",
        data_dir: DataDirOpt = None,
        quiet: bool = typer.Option(False, help="A flag.", metavar=FLAG),
    ) -> None:
        typer.echo(f"{run} {overrides} {device} {checkpoint} {data_dir} {quiet}")

    return tiny


def _help(app_, *args) -> str:
    result = runner.invoke(app_, [*args], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result.output


def test_dash_h_is_help_for_the_app_and_every_command():
    tiny = _tiny_app()
    assert _help(tiny, "-h") == _help(tiny, "--help")
    assert _help(tiny, "go", "-h") == _help(tiny, "go", "--help")
    assert "Usage:" in _help(tiny, "go", "-h")


def test_shared_options_show_conventional_metavars():
    text = _help(_tiny_app(), "go", "--help")
    for metavar in ("KEY=VALUE", "[auto|cpu|cuda|cuda:N]", "[best|last|PATH]", "DIR", "RUN"):
        assert metavar in text, metavar
    options = text.split("Options")[-1].split("--help")[0]
    # Typer >= 0.22 prints a type such as <bool> or <int> where no metavar is given;
    # an argument's type column (<path>) it prints regardless, so only options are checked.
    assert not re.search(r"<(int|str|float|path|bool)>", options), options
    assert "[default: $LSTMLAB_DATA_DIR, else ./data]" in text.replace("(", "").replace(")", "")
    assert "(default:" not in text  # one default style: [default: ...]


def test_my_commands_use_conventional_metavars():
    for command in ("cells", "recipes", "compare", "bench"):
        text = _help(app, command, "--help")
        options = text.split("Options")[-1].split("--help")[0]
        assert not re.search(r"<(int|str|float|path|bool)>", options), (command, options)
        assert "(default:" not in text, command
