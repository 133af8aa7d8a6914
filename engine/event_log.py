"""Rules every event store shares: turning an append into rows, and spotting a retried append."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from uuid import UUID

from engine.codec import EventCodec
from engine.errors import ConcurrencyConflict, DuplicateEventId
from engine.events import NewEvent, StoredRecord
from engine.hashchain import event_hash, utc_timestamp
from engine.ports import AppendResult

Encoded = tuple[str, int, str]
"""An event as stored: its type name, schema version and payload JSON."""


def encode_events(codec: EventCodec, events: Sequence[NewEvent]) -> list[Encoded]:
    """The events as stored, which an append may prepare before it takes the append lock."""
    return [codec.encode(new.event) for new in events]


def build_records(codec: EventCodec, events: Sequence[NewEvent], *, stream_id: str, stream_version: int,
                  head_position: int, head_hash: str, recorded_at: datetime,
                  encoded: Sequence[Encoded] | None = None) -> list[StoredRecord]:
    """The rows an append writes after ``head_position``, hash-chained from ``head_hash`` (from ``encoded``
    when the events were encoded already)."""
    records = []
    previous_hash = head_hash
    stamp = utc_timestamp(recorded_at)
    for offset, (new, (event_type, schema_version, payload)) in enumerate(
            zip(events, encoded if encoded is not None else encode_events(codec, events), strict=True), start=1):
        position = head_position + offset
        version = stream_version + offset
        digest = event_hash(previous_hash, position=position, event_id=new.event_id, stream_id=stream_id,
                            stream_version=version, event_type=event_type, schema_version=schema_version,
                            payload=payload, metadata=new.metadata, recorded_at=stamp)
        records.append(StoredRecord.model_construct(
            position=position, event_id=new.event_id, stream_id=stream_id, stream_version=version,
            event_type=event_type, schema_version=schema_version, payload=payload,
            metadata=new.metadata, recorded_at=recorded_at, hash=digest,
        ))
        previous_hash = digest
    return records


def resolve_stale_append(stream_id: str, expected_version: int, actual_version: int,
                         events: Sequence[NewEvent],
                         stored: dict[UUID, tuple[str, int, int]]) -> AppendResult:
    """Decide what a stale append is: a retry of an append already stored, or a conflict.

    ``stored`` maps the append's event ids that exist to (stream id, stream version, position).
    A retry is when every id is stored, in this stream, as the versions right after
    ``expected_version`` in the same order; then the original positions are returned.
    """
    if not stored:
        raise ConcurrencyConflict(stream_id, expected_version, actual_version)
    wanted = [(stream_id, expected_version + i) for i in range(1, len(events) + 1)]
    found = [stored.get(new.event_id) for new in events]
    if all(f is not None and (f[0], f[1]) == w for f, w in zip(found, wanted, strict=True)):
        positions = tuple(f[2] for f in found if f is not None)
        return AppendResult(positions=positions, stream_version=expected_version + len(events),
                            duplicate=True)
    raise duplicate_ids(stream_id, [new.event_id for new in events if new.event_id in stored])


def duplicate_ids(stream_id: str, event_ids: Sequence[UUID]) -> DuplicateEventId:
    """The error for an append that reuses ids stored as other events."""
    return DuplicateEventId(f"append to {stream_id!r} reuses event ids stored elsewhere: "
                            + ", ".join(str(i) for i in event_ids))
