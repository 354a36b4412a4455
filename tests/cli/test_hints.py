"""Every command and option a message names exists, spelled as the user must type it."""

from __future__ import annotations

import ast
import re

import click
import typer

from lstmlab.cli.app import app

from support import REPO

COMMAND = re.compile(r"`lstmlab ([a-z][a-z-]*)([^`]*)`")
# torchrun's own flags, in the command line lstmlab builds for it
FOREIGN = {"--standalone", "--nproc_per_node"}
OPTION = re.compile(r"(?<![\w-])(--[a-z][a-z0-9_-]*)")


def _options(command: click.Command) -> set[str]:
    names = {"--help", "-h"}
    for param in command.params:
        names.update(o for o in (*param.opts, *param.secondary_opts) if o.startswith("-"))
    return names


def _strings() -> list[tuple[str, str]]:
    """(file:line, text) of every string literal in the package (f-string pieces too)."""
    out = []
    for path in sorted((REPO / "lstmlab").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                out.append((f"{path.relative_to(REPO)}:{node.lineno}", node.value))
    return out


def test_commands_and_options_named_in_messages_exist():
    root = typer.main.get_command(app)
    commands = {name: _options(cmd) for name, cmd in root.commands.items()}
    every_option = set().union(*commands.values(), _options(root), FOREIGN)
    problems = []
    for where, text in _strings():
        for name, rest in COMMAND.findall(text):
            if name not in commands:
                problems.append(f"{where}: `lstmlab {name}` is not a command")
                continue
            for option in OPTION.findall(rest):
                if option not in commands[name]:
                    problems.append(f"{where}: `lstmlab {name}` has no {option}")
        for option in OPTION.findall(text):
            if option not in every_option:
                problems.append(f"{where}: no command has {option}")
    assert not problems, "\n".join(problems)
