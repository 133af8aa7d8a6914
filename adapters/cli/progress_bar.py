"""The progress of long work (``audit verify``, ``audit export``, ``projections rebuild``, ``db upgrade``), drawn on
stderr with rich's progress display: done of total, rate and time left. Only on a terminal, and never with
``--quiet``: otherwise the work gets no reporter and nothing of it is drawn. Standard output is left alone."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Annotated

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from dma_upgrade.adapters.cli.errors import stderr
from dma_upgrade.adapters.progress_report import Reporter

Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="draw no progress on stderr (drawn only on a terminal)")]
"""The ``--quiet`` option of a command that shows its progress."""


class _RateColumn(ProgressColumn):
    """The rate, as rich's ``TaskProgressColumn`` shows it when the total is unknown (it shows none otherwise)."""

    def render(self, task: Task) -> Text:
        return TaskProgressColumn.render_speed(task.finished_speed or task.speed)


class _Bar:
    """A ``Reporter`` drawing one task of ``progress``, shown once the work says how much there is (not for none)."""

    def __init__(self, progress: Progress, description: str) -> None:
        self._progress = progress
        self._description = description
        self._task: TaskID | None = None

    def start(self, total: int) -> None:
        if total > 0:
            self._task = self._progress.add_task(self._description, total=total)
            self._progress.start()

    def advance(self, done: int) -> None:
        if self._task is not None:
            self._progress.advance(self._task, done)


@contextlib.contextmanager
def progress_bar(description: str, *, quiet: bool) -> Iterator[Reporter | None]:
    """A reporter drawing the work's progress on stderr while the block runs, or None when stderr is not a
    terminal or ``quiet``; the display is stopped (its last state left on screen) when the block ends."""
    if quiet or not stderr.is_terminal:
        yield None
        return
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), _RateColumn(),
                        TimeRemainingColumn(), console=stderr, redirect_stdout=False, redirect_stderr=False)
    try:
        yield _Bar(progress, description)
    finally:
        progress.stop()
