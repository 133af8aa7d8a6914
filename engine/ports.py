"""Ports: what the engine needs from the outside world, with their contracts.

Implementations live in ``adapters/``; in-memory ones used by tests follow the same contracts.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol
from uuid import UUID

from engine.events import NewEvent, RecordedEvent, StoredRecord


class Clock(Protocol):
    """The only source of time for the core."""

    def now(self) -> datetime:
        """The current time, timezone-aware, in UTC."""
        ...


class IdFactory(Protocol):
    """The only source of new identifiers for the core."""

    def new_id(self) -> UUID:
        """A new, unique id."""
        ...


@dataclass(frozen=True)
class AppendResult:
    """Where an append landed: global positions of its events and the stream's new version."""

    positions: tuple[int, ...]
    stream_version: int
    duplicate: bool = False


class EventStore(Protocol):
    """An append-only log of events, one sequence per stream and one global order.

    Semantics every implementation keeps:

    - ``append`` is atomic: all events are stored or none. ``expected_version`` is the number of
      events the caller saw in the stream; if the stream holds another number, ``ConcurrencyConflict``
      is raised and nothing is written. Stream versions start at 1 and have no gaps.
    - Appending event ids that are already stored, as the same events of the same stream (a retried
      append), writes nothing and returns the original positions with ``duplicate=True``.
    - Global positions start at 1, have no gaps, and their order equals commit order: a reader that
      reads ``after=p`` repeatedly never skips an event that commits later.
    - Each stored event carries the SHA-256 chain hash of ``engine.hashchain``.
    - ``recorded_at`` comes from the store's clock, in UTC.
    """

    def append(self, stream_id: str, expected_version: int, events: Sequence[NewEvent]) -> AppendResult:
        """Append events to a stream if it holds exactly ``expected_version`` events."""
        ...

    def read_stream(self, stream_id: str) -> list[RecordedEvent]:
        """Every event of one stream in version order (empty for an unknown stream)."""
        ...

    def read_all(self, after: int = 0, page_size: int = 1000) -> Iterator[RecordedEvent]:
        """Events with position > ``after`` in global order, fetched in pages (constant memory)."""
        ...

    def read_records(self, after: int = 0, page_size: int = 1000) -> Iterator[StoredRecord]:
        """Like ``read_all`` but undecoded, as stored (for the audit trail and verification)."""
        ...

    def head_position(self) -> int:
        """The position of the last stored event (0 when empty)."""
        ...
