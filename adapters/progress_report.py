"""How long work says how far it got: a ``Reporter`` the command line draws, told in batches, never per event.

Work over the log (verifying, exporting, rebuilding) counts positions of the log passed: a ``LogWalk`` from one
position to another tells its reporter the total once, then how many positions each batch passed. A schema
upgrade counts migrations. ``None`` for a reporter means nobody watches: the work runs as it would without one.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import chain, islice
from typing import Protocol, TypeVar

REPORT_EVERY = 1000
"""Records between two reports of a walk over records: a report is a call, not a cost per event."""


class Reporter(Protocol):
    """Told the size of some work once, then how much more of it is done, as it goes."""

    def start(self, total: int) -> None:
        """The work ahead: ``total`` units (0: nothing to do)."""

    def advance(self, done: int) -> None:
        """``done`` more units finished since the last call."""


class Positioned(Protocol):
    """A record of the log: it has a position."""

    @property
    def position(self) -> int: ...


R = TypeVar("R", bound=Positioned)


class LogWalk:
    """A walk over the log from after position ``after`` up to ``end``, told to ``reporter`` (if any) as
    positions passed; a position reached again or earlier (a retry) is not counted twice, nor one past ``end``
    (appended since the walk began)."""

    def __init__(self, reporter: Reporter | None, end: int, after: int = 0) -> None:
        self._reporter = reporter
        self.end = end
        self._at = after
        if reporter is not None:
            reporter.start(max(end - after, 0))

    def reach(self, position: int) -> None:
        """Every position up to ``position`` was passed."""
        position = min(position, self.end)
        if self._reporter is not None and position > self._at:
            self._reporter.advance(position - self._at)
            self._at = position

    def records(self, records: Iterable[R], every: int = REPORT_EVERY) -> Iterator[R]:
        """``records`` (in log order) unchanged, reaching the last position of each ``every`` of them."""
        if self._reporter is None:
            return iter(records)
        source = iter(records)

        def batch() -> tuple[R, ...]:
            taken = tuple(islice(source, every))
            if taken:
                self.reach(taken[-1].position)
            return taken

        return chain.from_iterable(iter(batch, ()))
