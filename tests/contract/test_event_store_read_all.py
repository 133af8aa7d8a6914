"""Reading the whole log gives the envelopes as appended, however the store speeds the read up."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from pydantic import ValidationError

from dma_upgrade.adapters.sql.event_store import SqlEventStore, envelope, metadata_of, stored_record
from dma_upgrade.engine.codec import EventCodec
from dma_upgrade.engine.events import EventMetadata, NewEvent, RecordedEvent, StoredRecord
from dma_upgrade.engine.hashchain import verify_chain
from dma_upgrade.engine.ports import EventStore
from dma_upgrade.engine.upgrade_events import InstallPhaseReported, Step, StepStarted
from tests.conftest import FakeClock


def _phase(index: int, correlation_id: uuid.UUID) -> NewEvent:
    return NewEvent(event_id=uuid.uuid4(), event=InstallPhaseReported(phase=f"phase {index}", phase_index=index,
                                                                      phase_count=2),
                    metadata=EventMetadata(actor="engine", correlation_id=correlation_id))


def test_read_all_gives_every_event_id_payload_metadata_and_time_as_appended_even_when_payloads_repeat(
        event_store: EventStore, clock: FakeClock) -> None:
    rollout, other = uuid.uuid4(), uuid.uuid4()
    appended: list[tuple[str, NewEvent, datetime]] = []
    for stream in ("upgrade-a", "upgrade-b", "upgrade-c"):
        for new in (_phase(0, rollout), _phase(1, rollout), _phase(0, other)):
            event_store.append(stream, len([a for a in appended if a[0] == stream]), [new])
            appended.append((stream, new, clock.now()))
            clock.advance(seconds=1.5)
    started = NewEvent(event_id=uuid.uuid4(), event=StepStarted(step=Step.INSTALL, attempt=1, idempotency_key="k"),
                       metadata=EventMetadata(actor="alice", causation_id=appended[0][1].event_id))
    event_store.append("upgrade-a", 3, [started])
    appended.append(("upgrade-a", started, clock.now()))

    read = list(event_store.read_all(page_size=4))
    assert [(r.stream_id, r.event_id, r.event, r.metadata, r.recorded_at) for r in read] == \
        [(stream, new.event_id, new.event, new.metadata, at) for stream, new, at in appended]
    assert [r.position for r in read] == list(range(1, len(appended) + 1))
    assert all(isinstance(r.event_id, uuid.UUID) and r.recorded_at.utcoffset() is not None for r in read)
    streams = [r for stream in ("upgrade-a", "upgrade-b", "upgrade-c") for r in event_store.read_stream(stream)]
    assert sorted(streams, key=lambda r: r.position) == read


def test_an_envelope_is_what_recorded_event_model_construct_builds() -> None:
    values = {"position": 7, "event_id": uuid.uuid4(), "stream_id": "upgrade-a", "stream_version": 2,
              "event": InstallPhaseReported(phase="copy", phase_index=0, phase_count=1),
              "metadata": EventMetadata(actor="engine"), "recorded_at": datetime(2026, 11, 30, 9, tzinfo=UTC)}
    built = envelope(**values)
    constructed = RecordedEvent.model_construct(**values)
    assert built == constructed
    assert built.model_fields_set == constructed.model_fields_set
    assert built.model_dump() == constructed.model_dump() == RecordedEvent.model_validate(values).model_dump()
    assert repr(built) == repr(constructed)
    with pytest.raises(ValidationError):
        built.position = 8  # type: ignore[misc]


@pytest.mark.parametrize("page_size", [1, 2, 3, 100])
def test_a_reader_walks_past_a_gap_left_by_deleted_rows_and_the_chain_check_names_it(
        db_engine: sa.Engine, codec: EventCodec, clock: FakeClock, page_size: int) -> None:
    store = SqlEventStore(db_engine, codec, clock)
    for index in range(8):
        store.append(f"upgrade-{index}", 0, [_phase(index, uuid.uuid4())])
    with db_engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM events WHERE position IN (3, 4, 7)"))

    assert [r.position for r in store.read_all(page_size=page_size)] == [1, 2, 5, 6, 8]
    assert [r.position for r in store.read_projected(page_size=page_size)] == [1, 2, 5, 6, 8]
    assert [r.position for r in store.read_all(after=3, page_size=page_size)] == [5, 6, 8]
    verdict = verify_chain(store.read_records(page_size=page_size))
    assert (verdict.broken_at, verdict.verified) == (3, 2) and "position 3 is missing" in verdict.reason


@pytest.mark.parametrize("ids", [(None, None), (uuid.uuid4(), None), (uuid.uuid4(), uuid.uuid4())])
def test_a_metadata_of_is_what_event_metadata_model_construct_builds(
        ids: tuple[uuid.UUID | None, uuid.UUID | None]) -> None:
    built = metadata_of("engine", *ids)
    constructed = EventMetadata.model_construct(actor="engine", correlation_id=ids[0], causation_id=ids[1])
    assert built == constructed and hash(built) == hash(constructed)
    assert built.model_fields_set == constructed.model_fields_set
    assert built.model_dump() == constructed.model_dump()
    assert repr(built) == repr(constructed)
    with pytest.raises(ValidationError):
        built.actor = "other"  # type: ignore[misc]


def test_a_stored_record_is_what_stored_record_model_construct_builds() -> None:
    values = {"position": 7, "event_id": uuid.uuid4(), "stream_id": "upgrade-a", "stream_version": 2,
              "event_type": "InstallPhaseReported", "schema_version": 1, "payload": '{"phase":"copy"}',
              "metadata": EventMetadata(actor="engine"), "recorded_at": datetime(2026, 11, 30, 9, tzinfo=UTC),
              "hash": "ab" * 32}
    built = stored_record(**{("digest" if k == "hash" else k): v for k, v in values.items()})  # type: ignore[arg-type]
    constructed = StoredRecord.model_construct(**values)
    assert built == constructed and built.model_fields_set == constructed.model_fields_set
    assert built.model_dump() == constructed.model_dump() == StoredRecord.model_validate(values).model_dump()
    assert repr(built) == repr(constructed)
