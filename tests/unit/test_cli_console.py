"""The command line's consoles: fitted to a terminal, as wide as their content off one."""

from __future__ import annotations

import io

from rich.table import Table

from dma_upgrade.adapters.cli.console import FitConsole

LONG = "x" * 150


def _printed(console: FitConsole) -> str:
    table = Table("value")
    table.add_row(LONG)
    console.print(table)
    file = console.file
    assert isinstance(file, io.StringIO)
    return file.getvalue()


def test_off_a_terminal_a_table_shows_a_value_wider_than_the_environment_says_in_full() -> None:
    printed = _printed(FitConsole(file=io.StringIO(), force_terminal=False, _environ={"COLUMNS": "80"}))

    assert LONG in printed
    assert max(len(line) for line in printed.splitlines()) == len(LONG) + 4


def test_on_a_terminal_a_table_fits_the_terminal() -> None:
    printed = _printed(FitConsole(file=io.StringIO(), force_terminal=True, color_system=None,
                                  _environ={"COLUMNS": "80"}))

    assert LONG not in printed
    assert max(len(line) for line in printed.splitlines()) == 80
