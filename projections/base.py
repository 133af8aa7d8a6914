"""What a projection is: a named, pure reducer over recorded events that keeps its own tables."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from dma_upgrade.engine.events import Event
from dma_upgrade.projections.tables import RowAccess, TableSpec


class Recorded(Protocol):
    """What a projection reads of a recorded event: a ``RecordedEvent`` has it all, and a runner may give
    a lighter record of just these (a rebuild does not need the event id or the stream version)."""

    @property
    def position(self) -> int: ...

    @property
    def stream_id(self) -> str: ...

    @property
    def event(self) -> Event: ...

    @property
    def actor(self) -> str: ...

    @property
    def recorded_at(self) -> datetime: ...


class Projection(Protocol):
    """A read model built only from events.

    ``handle`` takes events in global order and must be deterministic: the same events always give the
    same rows, so a rebuild from position 0 reproduces the live tables exactly. It may be given every
    event, but must change nothing for an event whose type is not in ``event_types``: runners give it
    only those.
    """

    name: str
    tables: tuple[TableSpec, ...]
    event_types: frozenset[type[Event]]

    def handle(self, recorded: Recorded, rows: RowAccess) -> None:
        """Apply one event to the projection's rows."""
        ...
