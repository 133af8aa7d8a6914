"""An engine that hangs in the middle of an append (SIGSTOP, a VM stall, threads slow to get the GIL) on
PostgreSQL does not stop the others: the append lock is taken and released inside the one statement that
appends (the server function ``dma_append``), so a process never holds it while the server waits for it.
Invariant: while any process is between two steps of an append, no session holds the append lock."""

from __future__ import annotations

import threading
import uuid
from datetime import datetime

import pytest
import sqlalchemy as sa

from dma_upgrade.adapters.clock import SystemClock
from dma_upgrade.adapters.sql.event_store import APPEND_LOCK_KEY, SqlEventStore
from dma_upgrade.engine.catalog import default_codec
from dma_upgrade.engine.events import EventMetadata, NewEvent
from dma_upgrade.engine.hashchain import verify_chain
from dma_upgrade.engine.ports import AppendResult
from dma_upgrade.engine.rollout_events import RolloutReleased

pytestmark = pytest.mark.postgres


class HangingClock(SystemClock):
    """The system clock, but reading it (which an append does in the middle of its work) waits until ``go`` is
    set."""

    def __init__(self) -> None:
        self.hanging = threading.Event()
        self.go = threading.Event()

    def now(self) -> datetime:
        self.hanging.set()
        self.go.wait(60)
        return super().now()


def one_event() -> list[NewEvent]:
    return [NewEvent(event_id=uuid.uuid4(), event=RolloutReleased(rollout_id=uuid.uuid4()),
                     metadata=EventMetadata(actor="test"))]


def append_lock_holders(engine: sa.Engine) -> int:
    """Sessions holding the append lock now."""
    with engine.connect() as conn:
        return conn.execute(sa.text(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND ((classid::bigint << 32) | objid::bigint) = :key"), {"key": APPEND_LOCK_KEY}).scalar_one()


def test_a_writer_hung_inside_an_append_holds_no_lock_and_stores_its_events_after_the_others(
        engine: sa.Engine) -> None:
    clock = HangingClock()
    hung_store = SqlEventStore(engine, default_codec(), clock)
    other_store = SqlEventStore(engine, default_codec(), SystemClock())
    outcome: list[BaseException | object] = []

    def hung_append() -> None:
        try:
            outcome.append(hung_store.append("stream-hung", 0, one_event()))
        except BaseException as error:
            outcome.append(error)

    hung = threading.Thread(target=hung_append)
    hung.start()
    assert clock.hanging.wait(30), "the hung append never started"
    assert append_lock_holders(engine) == 0
    others: list[object] = []
    other = threading.Thread(target=lambda: others.append(other_store.append("stream-other", 0, one_event())))
    other.start()
    other.join(60)
    assert not other.is_alive(), "the other engine's append stayed blocked behind the hung one"
    clock.go.set()
    hung.join(60)
    assert outcome == [AppendResult(positions=(2,), stream_version=1)]
    assert append_lock_holders(engine) == 0
    assert [r.stream_id for r in other_store.read_all()] == ["stream-other", "stream-hung"]
    assert verify_chain(other_store.read_records()).verified == 2
