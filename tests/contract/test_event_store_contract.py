"""The event store contract: the same tests for the in-memory, SQLite and PostgreSQL stores."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from dma_upgrade.engine.agent_events import AgentRegistered
from dma_upgrade.engine.errors import ConcurrencyConflict, DuplicateEventId
from dma_upgrade.engine.events import EventMetadata, NewEvent
from dma_upgrade.engine.hashchain import GENESIS_HASH, record_hash, verify_chain
from dma_upgrade.engine.ports import EventStore
from tests.conftest import FakeClock


def registered(name: str) -> NewEvent:
    return NewEvent(event_id=uuid.uuid4(),
                    event=AgentRegistered(name=name, address=f"10.0.0.{len(name)}", version="10.4.9.0-14794"),
                    metadata=EventMetadata(actor="alice", correlation_id=uuid.uuid4()))


def test_an_append_to_a_new_stream_starts_at_version_one_and_position_one(event_store: EventStore) -> None:
    result = event_store.append("agent-a", 0, [registered("a"), registered("a2")])
    assert result.positions == (1, 2)
    assert result.stream_version == 2
    assert not result.duplicate
    assert [e.stream_version for e in event_store.read_stream("agent-a")] == [1, 2]


def test_each_append_reports_the_new_stream_version(event_store: EventStore) -> None:
    assert event_store.append("agent-a", 0, [registered("a")]).stream_version == 1
    assert event_store.append("agent-a", 1, [registered("a"), registered("a")]).stream_version == 3
    assert event_store.append("agent-a", 3, [registered("a")]).stream_version == 4


def test_read_stream_returns_the_decoded_events_with_their_metadata(event_store: EventStore,
                                                                     clock: FakeClock) -> None:
    new = registered("a")
    event_store.append("agent-a", 0, [new])
    [recorded] = event_store.read_stream("agent-a")
    assert recorded.event == new.event
    assert recorded.event_id == new.event_id
    assert recorded.metadata == new.metadata
    assert recorded.recorded_at == clock.now()
    assert recorded.recorded_at.tzinfo is not None


def test_an_unknown_stream_reads_as_empty(event_store: EventStore) -> None:
    assert event_store.read_stream("agent-nobody") == []
    assert event_store.head_position() == 0


def test_a_stale_expected_version_raises_and_writes_nothing(event_store: EventStore) -> None:
    event_store.append("agent-a", 0, [registered("a")])
    with pytest.raises(ConcurrencyConflict) as caught:
        event_store.append("agent-a", 0, [registered("a")])
    assert caught.value.expected_version == 0
    assert caught.value.actual_version == 1
    assert "agent-a" in str(caught.value)
    assert event_store.head_position() == 1
    assert len(event_store.read_stream("agent-a")) == 1


def test_an_expected_version_ahead_of_the_stream_is_refused_too(event_store: EventStore) -> None:
    with pytest.raises(ConcurrencyConflict):
        event_store.append("agent-a", 3, [registered("a")])
    assert event_store.head_position() == 0


def test_retrying_an_append_with_the_same_event_ids_writes_no_duplicate(event_store: EventStore) -> None:
    batch = [registered("a"), registered("b")]
    event_store.append("agent-x", 0, [registered("x")])
    first = event_store.append("agent-a", 0, batch)
    event_store.append("agent-y", 0, [registered("y")])
    retry = event_store.append("agent-a", 0, batch)
    assert retry.duplicate
    assert retry.positions == first.positions == (2, 3)
    assert retry.stream_version == 2
    assert event_store.head_position() == 4


def test_reusing_an_event_id_in_another_stream_is_refused(event_store: EventStore) -> None:
    new = registered("a")
    event_store.append("agent-a", 0, [new])
    with pytest.raises(DuplicateEventId):
        event_store.append("agent-b", 0, [new])
    assert event_store.read_stream("agent-b") == []
    assert event_store.head_position() == 1


def test_a_partial_retry_is_a_conflict_not_a_duplicate(event_store: EventStore) -> None:
    stored = registered("a")
    event_store.append("agent-a", 0, [stored])
    with pytest.raises(DuplicateEventId):
        event_store.append("agent-a", 0, [stored, registered("a")])
    assert event_store.head_position() == 1


def test_read_all_walks_every_stream_in_global_order_in_pages(event_store: EventStore) -> None:
    for i in range(7):
        event_store.append(f"agent-{i % 3}", i // 3, [registered(str(i))])
    positions = [e.position for e in event_store.read_all(page_size=2)]
    assert positions == list(range(1, 8))
    assert [e.position for e in event_store.read_all(after=5, page_size=2)] == [6, 7]
    assert list(event_store.read_all(after=7)) == []


def test_every_event_carries_the_hash_chain(event_store: EventStore) -> None:
    for i in range(5):
        event_store.append(f"agent-{i}", 0, [registered(str(i)), registered(f"{i}b")])
    records = list(event_store.read_records(page_size=3))
    previous = GENESIS_HASH
    for record in records:
        assert record.hash == record_hash(previous, record)
        previous = record.hash
    verdict = verify_chain(iter(records))
    assert verdict.ok
    assert verdict.verified == 10


def test_recorded_at_comes_from_the_clock_in_utc(event_store: EventStore, clock: FakeClock) -> None:
    clock.current = datetime(2031, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    event_store.append("agent-a", 0, [registered("a")])
    [recorded] = event_store.read_stream("agent-a")
    assert recorded.recorded_at == clock.current


def test_an_empty_append_writes_nothing(event_store: EventStore) -> None:
    result = event_store.append("agent-a", 0, [])
    assert result.positions == ()
    assert event_store.head_position() == 0


def test_read_category_returns_the_streams_with_a_prefix_in_global_order(event_store: EventStore) -> None:
    event_store.append("agent-b", 0, [registered("b")])
    event_store.append("agentx-1", 0, [registered("x")])
    event_store.append("agent-a", 0, [registered("a")])
    event_store.append("agent-b", 1, [registered("b2")])
    events = list(event_store.read_category("agent-"))
    assert [(e.stream_id, e.position) for e in events] == [("agent-b", 1), ("agent-a", 3), ("agent-b", 4)]
    assert list(event_store.read_category("nothing-")) == []


def test_read_stream_can_start_after_a_version(event_store: EventStore) -> None:
    event_store.append("agent-a", 0, [registered("a"), registered("b"), registered("c")])
    assert [e.stream_version for e in event_store.read_stream("agent-a", after_version=1)] == [2, 3]
    assert event_store.read_stream("agent-a", after_version=3) == []


def test_text_with_quotes_backslashes_placeholders_and_unicode_is_stored_as_given(event_store: EventStore) -> None:
    odd = "o'brien \\ '' \\' %s %(x)s {0} {} ; -- é 漢字 🚀 \t\n"
    new = NewEvent(event_id=uuid.uuid4(), event=AgentRegistered(name=odd, address=odd, version="10.4.9.0-14794"),
                   metadata=EventMetadata(actor=odd, correlation_id=uuid.uuid4()))
    stream = f"agent-{odd}"
    event_store.append(stream, 0, [new])
    event_store.append(stream, 1, [registered("plain")])

    first = event_store.read_stream(stream)[0]
    assert (first.stream_id, first.event, first.metadata) == (stream, new.event, new.metadata)
    assert [r.stream_id for r in event_store.read_all()] == [stream, stream]
    assert verify_chain(event_store.read_records()).ok
