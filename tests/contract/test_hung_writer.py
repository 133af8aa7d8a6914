"""An engine that hangs in the middle of an append (SIGSTOP, a VM stall) on PostgreSQL does not stop the
others: the server ends its transaction, which frees the append lock; its own append then fails, storing
nothing."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import datetime

import pytest
import sqlalchemy as sa

from dma_upgrade.adapters.clock import SystemClock
from dma_upgrade.adapters.sql.database import create_db_engine
from dma_upgrade.adapters.sql.event_store import SqlEventStore
from dma_upgrade.engine.catalog import default_codec
from dma_upgrade.engine.errors import StoreUnavailable
from dma_upgrade.engine.events import EventMetadata, NewEvent
from dma_upgrade.engine.rollout_events import RolloutReleased

pytestmark = pytest.mark.postgres


class HangingClock(SystemClock):
    """The system clock, but reading it (which an append does while it holds the append lock) waits until
    ``go`` is set."""

    def __init__(self) -> None:
        self.hanging = threading.Event()
        self.go = threading.Event()

    def now(self) -> datetime:
        self.hanging.set()
        self.go.wait(60)
        return super().now()


@pytest.fixture
def engine(postgres_url: str) -> Iterator[sa.Engine]:
    engine = create_db_engine(postgres_url)
    yield engine
    engine.dispose()


def one_event() -> list[NewEvent]:
    return [NewEvent(event_id=uuid.uuid4(), event=RolloutReleased(rollout_id=uuid.uuid4()),
                     metadata=EventMetadata(actor="test"))]


def test_a_writer_hung_inside_an_append_frees_the_lock_for_the_others_and_stores_nothing(
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
    assert clock.hanging.wait(30), "the hung append never took the lock"
    others: list[object] = []
    other = threading.Thread(target=lambda: others.append(other_store.append("stream-other", 0, one_event())))
    other.start()
    other.join(60)
    assert not other.is_alive(), "the other engine's append stayed blocked behind the hung one"
    clock.go.set()
    hung.join(60)
    assert isinstance(outcome[0], StoreUnavailable), outcome
    assert [r.stream_id for r in other_store.read_all()] == ["stream-other"]
