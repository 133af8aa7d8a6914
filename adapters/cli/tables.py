"""A list printed as a table: the output of the ``list`` and ``status`` commands."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from rich.console import RenderableType
from rich.table import Table

from dma_upgrade.adapters.cli.context import out


def print_table(columns: Sequence[str], rows: Iterable[Sequence[RenderableType]]) -> None:
    """Print ``rows`` under a header of ``columns``, one line (or more, where a cell wraps) each."""
    table = Table(*columns)
    for row in rows:
        table.add_row(*row)
    out.print(table)
