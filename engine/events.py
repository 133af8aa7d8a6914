"""Event models, their envelopes and the metadata every event carries.

An event is a pydantic model with a class-level ``event_type`` name and ``schema_version``.
``NewEvent`` is what a command hands to the store; ``RecordedEvent`` is what the store gives back,
with its place in the stream and in the global order.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import ClassVar
from uuid import UUID

from pydantic import BaseModel, ConfigDict


class Event(BaseModel):
    """Base of every domain event: immutable, strictly validated, named and versioned."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_type: ClassVar[str]
    schema_version: ClassVar[int] = 1


class EventMetadata(BaseModel):
    """Who caused an event and in reply to what."""

    model_config = ConfigDict(frozen=True)

    actor: str = "system"
    correlation_id: UUID | None = None
    causation_id: UUID | None = None


class NewEvent(BaseModel):
    """An event about to be appended, with the id that makes a retried append idempotent."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    event_id: UUID
    event: Event
    metadata: EventMetadata = EventMetadata()


class StoredRecord(BaseModel):
    """One row of the event store as stored: the payload still encoded, plus the hash chain."""

    model_config = ConfigDict(frozen=True)

    position: int
    event_id: UUID
    stream_id: str
    stream_version: int
    event_type: str
    schema_version: int
    payload: str
    metadata: EventMetadata
    recorded_at: datetime
    hash: str


class RecordedEvent(BaseModel):
    """A stored event decoded into its current model (upcast when stored at an older version)."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    position: int
    event_id: UUID
    stream_id: str
    stream_version: int
    event: Event
    metadata: EventMetadata
    recorded_at: datetime

    @property
    def actor(self) -> str:
        """Who caused the event (its metadata's actor)."""
        return self.metadata.actor


def events_by_stream(recorded: Iterable[RecordedEvent]) -> dict[str, list[Event]]:
    """The events of ``recorded`` grouped by stream, each stream's in order, streams in order of first event."""
    streams: dict[str, list[Event]] = {}
    for event in recorded:
        streams.setdefault(event.stream_id, []).append(event.event)
    return streams
