"""Rules every event store shares: turning an append into rows, and spotting a retried append."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import NamedTuple
from uuid import UUID

from dma_upgrade.engine.codec import EventCodec
from dma_upgrade.engine.errors import ConcurrencyConflict, DuplicateEventId
from dma_upgrade.engine.events import NewEvent, StoredRecord
from dma_upgrade.engine.hashchain import canonical_texts, chain_hash, json_str, utc_timestamp
from dma_upgrade.engine.ports import AppendResult

Encoded = tuple[str, int, str]
"""An event as stored: its type name, schema version and payload JSON."""


def encode_events(codec: EventCodec, events: Sequence[NewEvent]) -> list[Encoded]:
    """The events as stored, which an append may prepare before it takes the append lock."""
    return [codec.encode(new.event) for new in events]


class PreparedEvent(NamedTuple):
    """An event of an append made ready before the append lock: encoded, and its canonical JSON for the hash
    chain written but for the position, stream version and recorded-at, which only the lock decides."""

    new: NewEvent
    event_type: str
    schema_version: int
    payload: str
    parts: tuple[str, str]
    """``hashchain.canonical_parts`` of the event."""
    ids: tuple[str, str | None, str | None]
    """The event id, correlation id and causation id as ``str(uuid)`` writes them (None for none)."""


def prepare_events(codec: EventCodec, stream_id: str, events: Sequence[NewEvent],
                   encoded: Sequence[Encoded] | None = None) -> list[PreparedEvent]:
    """The events of an append to ``stream_id`` made ready for ``chain`` (from ``encoded`` when the events were
    encoded already)."""
    prepared = []
    stream_json = json_str(stream_id)
    texts: dict[UUID | None, str] = {None: ""}
    """The ids as text, worked out once each: an event's causation is often the event before it, and the events
    of an append share their correlation."""
    for new, (event_type, schema_version, payload) in zip(
            events, encoded if encoded is not None else encode_events(codec, events), strict=True):
        metadata = new.metadata
        event_id = texts[new.event_id] = str(new.event_id)
        correlation = texts.get(metadata.correlation_id)
        if correlation is None:
            correlation = texts[metadata.correlation_id] = str(metadata.correlation_id)
        causation = texts.get(metadata.causation_id)
        if causation is None:
            causation = texts[metadata.causation_id] = str(metadata.causation_id)
        prepared.append(PreparedEvent(new, event_type, schema_version, payload, canonical_texts(
            event_id, stream_json, event_type, schema_version, payload, metadata.actor, correlation, causation),
            (event_id, correlation or None, causation or None)))
    return prepared


def chain(prepared: Sequence[PreparedEvent], *, stream_version: int, head_position: int, head_hash: str,
          recorded_at: str) -> list[str]:
    """The chain hashes of an append's events written after ``head_position`` (whose hash is ``head_hash``) as
    the versions after ``stream_version`` (``recorded_at`` as ``utc_timestamp`` writes it)."""
    digests = []
    previous_hash = head_hash
    for offset, event in enumerate(prepared, start=1):
        previous_hash = chain_hash(previous_hash, head_position + offset, stream_version + offset, recorded_at,
                                   event.parts)
        digests.append(previous_hash)
    return digests


def build_records(codec: EventCodec, events: Sequence[NewEvent], *, stream_id: str, stream_version: int,
                  head_position: int, head_hash: str, recorded_at: datetime,
                  encoded: Sequence[Encoded] | None = None) -> list[StoredRecord]:
    """The rows an append writes after ``head_position``, hash-chained from ``head_hash`` (from ``encoded``
    when the events were encoded already)."""
    prepared = prepare_events(codec, stream_id, events, encoded)
    digests = chain(prepared, stream_version=stream_version, head_position=head_position, head_hash=head_hash,
                    recorded_at=utc_timestamp(recorded_at))
    return [StoredRecord.model_construct(
        position=head_position + offset, event_id=event.new.event_id, stream_id=stream_id,
        stream_version=stream_version + offset, event_type=event.event_type, schema_version=event.schema_version,
        payload=event.payload, metadata=event.new.metadata, recorded_at=recorded_at, hash=digest,
    ) for offset, (event, digest) in enumerate(zip(prepared, digests, strict=True), start=1)]


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
