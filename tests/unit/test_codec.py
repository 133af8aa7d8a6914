"""Encoding events, decoding stored payloads, and upcasting older schema versions."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from dma_upgrade.adapters.memory.event_store import InMemoryEventStore
from dma_upgrade.engine.agent_events import AgentRegistered, FailoverRole
from dma_upgrade.engine.codec import EventCodec
from dma_upgrade.engine.errors import EventDecodeError, UnknownEventType
from dma_upgrade.engine.events import Event, NewEvent, StoredRecord
from dma_upgrade.engine.rollout_events import RolloutStarted
from tests.conftest import FakeClock

V1_PAYLOAD = json.dumps(
    {"name": "dma-01", "ip": "10.11.12.13", "cluster": "north", "version": "10.3.0.0-13000"})


def test_a_v1_agent_registration_is_read_as_the_current_v2_model(codec: EventCodec) -> None:
    event = codec.decode("AgentRegistered", 1, V1_PAYLOAD, position=12)
    assert isinstance(event, AgentRegistered)
    assert event.address == "10.11.12.13"
    assert event.cluster == "north"
    assert event.failover_role is None
    assert AgentRegistered.schema_version == 2


def test_a_v1_row_in_a_store_reads_back_upcast(codec: EventCodec, clock: FakeClock) -> None:
    store = InMemoryEventStore(codec, clock)
    store.append("agent-dma-02", 0, [NewEvent(event_id=uuid.uuid4(), event=AgentRegistered(
        name="dma-02", address="dma-02.example", version="10.4.9.0-14794", dataminer_id=7,
        failover_partner="dma-03", failover_role=FailoverRole.MAIN))])
    [record] = list(store.read_records())
    v1 = record.model_copy(update={"schema_version": 1, "payload": V1_PAYLOAD})
    recorded = codec.decode_record(v1)
    assert isinstance(recorded.event, AgentRegistered)
    assert recorded.event.name == "dma-01"
    assert recorded.event.address == "10.11.12.13"


def test_the_current_version_round_trips(codec: EventCodec) -> None:
    event = AgentRegistered(name="a", address="10.0.0.1", version="10.4.9.0-14794", dataminer_id=3)
    event_type, version, payload = codec.encode(event)
    assert (event_type, version) == ("AgentRegistered", 2)
    assert codec.decode(event_type, version, payload) == event


def test_a_payload_that_does_not_parse_names_its_position(codec: EventCodec) -> None:
    with pytest.raises(EventDecodeError) as caught:
        codec.decode("AgentRegistered", 2, '{"name": "a"', position=41)
    assert "position 41" in str(caught.value)
    assert "AgentRegistered" in str(caught.value)


def test_a_payload_missing_a_field_names_the_field_and_position(codec: EventCodec) -> None:
    with pytest.raises(EventDecodeError) as caught:
        codec.decode("AgentRegistered", 2, '{"name": "a", "address": "x"}', position=5)
    assert "position 5" in str(caught.value)
    assert "version" in str(caught.value)


def test_an_old_payload_that_is_not_an_object_is_refused(codec: EventCodec) -> None:
    with pytest.raises(EventDecodeError, match="position 9"):
        codec.decode("AgentRegistered", 1, "[1, 2]", position=9)


def test_an_unknown_event_type_is_named(codec: EventCodec) -> None:
    with pytest.raises(UnknownEventType) as caught:
        codec.decode("AgentTeleported", 1, "{}", position=3)
    assert "AgentTeleported" in str(caught.value)
    assert "position 3" in str(caught.value)


def test_a_schema_version_newer_than_the_code_is_refused(codec: EventCodec) -> None:
    with pytest.raises(EventDecodeError, match="newer"):
        codec.decode("AgentRegistered", 3, V1_PAYLOAD, position=1)


def test_encoding_an_unregistered_event_type_is_refused() -> None:
    class Stray(Event):
        event_type = "Stray"

    with pytest.raises(UnknownEventType):
        EventCodec().encode(Stray())


def test_a_stored_record_keeps_the_payload_as_stored(codec: EventCodec, clock: FakeClock) -> None:
    store = InMemoryEventStore(codec, clock)
    event = AgentRegistered(name="a", address="10.0.0.1", version="10.4.9.0-14794")
    store.append("agent-a", 0, [NewEvent(event_id=uuid.uuid4(), event=event)])
    [record] = list(store.read_records())
    assert isinstance(record, StoredRecord)
    assert json.loads(record.payload)["address"] == "10.0.0.1"


def test_a_rollout_started_stored_before_it_kept_its_times_reads_back_without_them(codec: EventCodec) -> None:
    event = codec.decode("RolloutStarted", 1, "{}", position=9)

    assert event == RolloutStarted()
    assert isinstance(event, RolloutStarted)
    assert (event.scheduled_at, event.started_at, event.lateness_seconds) == (None, None, None)


def test_a_rollout_started_round_trips_its_scheduled_and_actual_times(codec: EventCodec) -> None:
    scheduled_at = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
    event = RolloutStarted(scheduled_at=scheduled_at, started_at=scheduled_at + timedelta(seconds=12.5))

    event_type, version, payload = codec.encode(event)

    assert (event_type, version) == ("RolloutStarted", 1)
    assert json.loads(payload) == {"scheduled_at": "2026-11-30T09:00:00Z", "started_at": "2026-11-30T09:00:12.500000Z"}
    decoded = codec.decode(event_type, version, payload)
    assert decoded == event
    assert isinstance(decoded, RolloutStarted) and decoded.lateness_seconds == 12.5
