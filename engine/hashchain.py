"""The SHA-256 hash chain over the global order of events.

``hash(n) = SHA-256(hash(n-1) || canonical JSON of event n)``, with ``GENESIS_HASH`` before the
first event. The canonical form covers every stored field, the position included, so an altered,
deleted or moved row breaks the chain at the first position it touches.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from hashlib import sha256
from json.encoder import encode_basestring
from uuid import UUID

from dma_upgrade.engine.events import EventMetadata, StoredRecord

GENESIS_HASH = "0" * 64

_json_str: Callable[[str], str] = encode_basestring
"""A JSON string as ``json.dumps(..., ensure_ascii=False)`` writes it (the same function it calls)."""
json_str = _json_str


def utc_timestamp(moment: datetime) -> str:
    """The canonical text of a recorded-at time: UTC, microseconds, a trailing Z."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    elif moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    if moment.year >= 1000:  # isoformat is a few times faster than strftime, which does not pad a year below 1000
        return moment.isoformat(timespec="microseconds")[:-6] + "Z"
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def event_hash(previous_hash: str, *, position: int, event_id: UUID, stream_id: str, stream_version: int,
               event_type: str, schema_version: int, payload: str, metadata: EventMetadata,
               recorded_at: str) -> str:
    """The chain hash of one event given the hash of the event before it (``recorded_at`` as
    ``utc_timestamp`` writes it)."""
    return chain_hash(previous_hash, position, stream_version, recorded_at,
                      canonical_parts(event_id, stream_id, event_type, schema_version, payload, metadata))


def canonical_parts(event_id: UUID, stream_id: str, event_type: str, schema_version: int, payload: str,
                    metadata: EventMetadata) -> tuple[str, str]:
    """The canonical JSON of an event around its position, stream version and recorded-at, which an append
    prepares before it knows them: the text between the position and the stream version, and the text
    between the stream version and the recorded-at.

    The canonical form is ``json.dumps([position, event id, stream id, stream version, event type, schema
    version, payload, actor, correlation id or "", causation id or "", recorded at], ensure_ascii=False,
    separators=(",", ":"))``, written here piece by piece, byte for byte the same."""
    correlation, causation = metadata.correlation_id, metadata.causation_id
    return canonical_texts(str(event_id), _json_str(stream_id), event_type, schema_version, payload, metadata.actor,
                           "" if correlation is None else str(correlation), "" if causation is None else str(causation))


def canonical_texts(event_id: str, stream_json: str, event_type: str, schema_version: int, payload: str, actor: str,
                    correlation_id: str, causation_id: str) -> tuple[str, str]:
    """``canonical_parts`` from the ids as text (``str(uuid)``, or "" for none) and the stream id as JSON
    (``json_str``), which an append of many events works out once for all of them."""
    return (f',"{event_id}",{stream_json},',
            f",{_json_str(event_type)},{schema_version:d},{_json_str(payload)},{_json_str(actor)},"
            f'"{correlation_id}","{causation_id}","')


def chain_hash(previous_hash: str, position: int, stream_version: int, recorded_at: str,
               parts: tuple[str, str]) -> str:
    """The chain hash of an event from its ``canonical_parts`` (``recorded_at`` as ``utc_timestamp`` writes it)."""
    before_version, before_time = parts
    canonical = f'{previous_hash}[{position:d}{before_version}{stream_version:d}{before_time}{recorded_at}"]'
    return sha256(canonical.encode()).hexdigest()


def record_hash(previous_hash: str, record: StoredRecord) -> str:
    """The chain hash a stored record should carry."""
    return event_hash(
        previous_hash, position=record.position, event_id=record.event_id, stream_id=record.stream_id,
        stream_version=record.stream_version, event_type=record.event_type,
        schema_version=record.schema_version, payload=record.payload, metadata=record.metadata,
        recorded_at=utc_timestamp(record.recorded_at),
    )


@dataclass(frozen=True)
class ChainVerdict:
    """The outcome of walking the chain: how many events checked and where it first broke."""

    verified: int
    last_position: int
    last_hash: str
    broken_at: int | None = None
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.broken_at is None


def verify_chain(records: Iterable[StoredRecord], *, after: int = 0,
                 previous_hash: str = GENESIS_HASH) -> ChainVerdict:
    """Walk records in global order from position ``after + 1`` and report the first break, if any.

    To go on from an earlier verdict, pass its ``last_position`` and ``last_hash`` as ``after`` and
    ``previous_hash``, with the records after that position; ``verified`` counts only those records.
    """
    expected_position = after + 1
    verified = 0
    for record in records:
        if record.position != expected_position:
            return ChainVerdict(verified, expected_position - 1, previous_hash, expected_position,
                                f"position {expected_position} is missing (next stored is {record.position})")
        if record_hash(previous_hash, record) != record.hash:
            return ChainVerdict(verified, expected_position - 1, previous_hash, record.position,
                                f"hash mismatch at position {record.position}")
        previous_hash = record.hash
        expected_position += 1
        verified += 1
    return ChainVerdict(verified, expected_position - 1, previous_hash)
