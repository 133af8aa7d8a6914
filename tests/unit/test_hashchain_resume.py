"""Verifying the hash chain from the middle: seeded with the last verified position and hash."""

from __future__ import annotations

import uuid

from dma_upgrade.adapters.memory.event_store import InMemoryEventStore
from dma_upgrade.engine.agent_events import AgentRegistered
from dma_upgrade.engine.catalog import default_codec
from dma_upgrade.engine.events import NewEvent, StoredRecord
from dma_upgrade.engine.hashchain import verify_chain
from tests.conftest import FakeClock


def stored(count: int) -> list[StoredRecord]:
    store = InMemoryEventStore(default_codec(), FakeClock())
    for i in range(count):
        event = AgentRegistered(name=f"dma-{i}", address=f"10.0.0.{i}", version="10.4.0.0-14112")
        store.append(f"agent-dma-{i}", 0, [NewEvent(event_id=uuid.uuid4(), event=event)])
    return list(store.read_records())


def test_a_walk_resumed_from_an_earlier_verdict_ends_where_a_full_walk_ends() -> None:
    records = stored(9)
    first = verify_chain(records[:4])

    resumed = verify_chain(records[4:], after=first.last_position, previous_hash=first.last_hash)

    assert resumed.ok and resumed.verified == 5
    assert (resumed.last_position, resumed.last_hash) == (9, verify_chain(records).last_hash)


def test_a_resumed_walk_with_a_wrong_seed_hash_breaks_at_its_first_record() -> None:
    records = stored(6)

    resumed = verify_chain(records[3:], after=3, previous_hash=records[1].hash)

    assert resumed.broken_at == 4 and resumed.verified == 0 and resumed.last_position == 3


def test_a_resumed_walk_that_skips_a_position_reports_it_missing() -> None:
    records = stored(6)

    resumed = verify_chain(records[4:], after=3, previous_hash=records[2].hash)

    assert resumed.broken_at == 4 and "position 4 is missing" in resumed.reason
