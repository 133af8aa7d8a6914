"""The chain hash is written piece by piece (``canonical_parts``, ``chain_hash``) for speed: it must be byte for
byte the hash of the canonical JSON the chain is defined by, whatever the text holds."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime

import pytest

from dma_upgrade.engine.catalog import default_codec
from dma_upgrade.engine.event_log import build_records
from dma_upgrade.engine.events import EventMetadata, NewEvent
from dma_upgrade.engine.hashchain import GENESIS_HASH, event_hash, utc_timestamp
from dma_upgrade.engine.rollout_events import RolloutReleased

TEXTS = ["plain", "", 'quote " and backslash \\', "control \x00\x01\x1f\t\n\r", "unicode é ü 漢字 🚀",
         "\u2028\u2029 separators", "</script>", '{"nested": "json", "n": [1, 2.5, null]}']


def reference_hash(previous_hash: str, position: int, event_id: uuid.UUID, stream_id: str, stream_version: int,
                   event_type: str, schema_version: int, payload: str, metadata: EventMetadata,
                   recorded_at: str) -> str:
    """The definition: SHA-256 of the previous hash and the canonical JSON of the event."""
    canonical = json.dumps(
        [position, str(event_id), stream_id, stream_version, event_type, schema_version, payload,
         metadata.actor, str(metadata.correlation_id or ""), str(metadata.causation_id or ""), recorded_at],
        ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(previous_hash.encode("ascii") + canonical.encode("utf-8")).hexdigest()


@pytest.mark.parametrize("text", TEXTS)
@pytest.mark.parametrize("ids", [(None, None), (uuid.uuid4(), None), (uuid.uuid4(), uuid.uuid4())])
def test_the_chain_hash_is_the_hash_of_the_canonical_json(text: str,
                                                          ids: tuple[uuid.UUID | None, uuid.UUID | None]) -> None:
    metadata = EventMetadata(actor=f"actor {text}", correlation_id=ids[0], causation_id=ids[1])
    fields = {"position": 12345678901, "event_id": uuid.uuid4(), "stream_id": f"stream-{text}", "stream_version": 7,
              "event_type": f"Type{text}", "schema_version": 2, "payload": json.dumps({"text": text}) + text,
              "metadata": metadata, "recorded_at": "2026-11-30T09:00:00.123456Z"}
    previous = hashlib.sha256(text.encode()).hexdigest()

    assert event_hash(previous, **fields) == reference_hash(previous, **fields)  # type: ignore[arg-type]


def test_an_append_chains_its_events_as_event_hash_does_whatever_ids_they_share() -> None:
    correlation = uuid.uuid4()
    news: list[NewEvent] = []
    for index in range(6):
        causation = news[-1].event_id if news and index % 2 else (None if index == 2 else uuid.uuid4())
        news.append(NewEvent(event_id=uuid.uuid4(), event=RolloutReleased(rollout_id=correlation),
                             metadata=EventMetadata(actor=TEXTS[index], causation_id=causation,
                                                    correlation_id=None if index == 4 else correlation)))
    moment = datetime(2026, 11, 30, 9, 0, 0, 123456, tzinfo=UTC)
    records = build_records(default_codec(), news, stream_id="rollout-é'\"", stream_version=3, head_position=10,
                            head_hash=GENESIS_HASH, recorded_at=moment)

    previous = GENESIS_HASH
    for record in records:
        assert record.hash == reference_hash(
            previous, record.position, record.event_id, record.stream_id, record.stream_version, record.event_type,
            record.schema_version, record.payload, record.metadata, utc_timestamp(moment))
        previous = record.hash
