"""Tables never cut a number: whole when they fit or are piped, plain lines in a narrow terminal."""

from __future__ import annotations

import io

from rich.console import Console
from rich.table import Table

from lstmlab.cli.common import print_table

NUMBERS = ["1,234,567", "2.0170", "120.0", "6,858", "0.123456789"]


def _table() -> Table:
    table = Table(title="compared: runs/zoo")
    for header in ("run", "params", "valid bpc", "train s", "tok/s", "ratio"):
        table.add_column(header)
    table.add_row("mlstm-ptb-with-a-long-name", *NUMBERS)
    return table


def test_a_narrow_terminal_gets_every_number_whole():
    out = io.StringIO()
    print_table(_table(), Console(file=out, width=40, force_terminal=True, color_system=None))
    text = out.getvalue()
    assert all(n in text for n in NUMBERS) and "…" not in text
    assert all(len(line) <= 40 or "params:" in line for line in text.splitlines())


def test_a_pipe_gets_the_whole_table():
    out = io.StringIO()
    print_table(_table(), Console(file=out, width=80, force_terminal=False))
    text = out.getvalue()
    assert all(n in text for n in NUMBERS) and "…" not in text and "┃ run" in text


def test_a_wide_terminal_gets_the_table():
    out = io.StringIO()
    print_table(_table(), Console(file=out, width=200, force_terminal=True, color_system=None))
    assert "┃ run" in out.getvalue() and "run:" not in out.getvalue()  # a table, not plain lines


def test_a_narrow_terminal_keeps_the_caption():
    out = io.StringIO()
    table = _table()
    table.caption = "final: each run's own budget"
    print_table(table, Console(file=out, width=40, force_terminal=True, color_system=None))
    assert out.getvalue().splitlines()[-1] == "final: each run's own budget"
