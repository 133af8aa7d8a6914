"""What a projection is: a named, pure reducer over recorded events that keeps its own tables."""

from __future__ import annotations

from typing import Protocol

from engine.events import RecordedEvent
from projections.tables import RowAccess, TableSpec


class Projection(Protocol):
    """A read model built only from events.

    ``handle`` is called once per event in global order (every event, including types it ignores)
    and must be deterministic: the same events always give the same rows, so a rebuild from
    position 0 reproduces the live tables exactly.
    """

    name: str
    tables: tuple[TableSpec, ...]

    def handle(self, recorded: RecordedEvent, rows: RowAccess) -> None:
        """Apply one event to the projection's rows."""
        ...
