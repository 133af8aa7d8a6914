"""LISTEN/NOTIFY wake-ups on PostgreSQL: an append to a rollout stream and handed-out upgrades wake a
listening engine's loops as they commit; appends to other streams do not."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from dma_upgrade.adapters.clock import SystemClock
from dma_upgrade.adapters.sql.event_store import SqlEventStore
from dma_upgrade.adapters.sql.leases import SqlLeases
from dma_upgrade.adapters.sql.wakeups import PgListener, Wakeup
from dma_upgrade.engine.catalog import default_codec
from dma_upgrade.engine.events import EventMetadata, NewEvent
from dma_upgrade.engine.rollout_events import ROLLOUT_STREAMS, RolloutReleased

pytestmark = pytest.mark.postgres


@pytest.fixture
def wakeups(engine: sa.Engine) -> Iterator[list[Wakeup]]:
    wakeups = [Wakeup(), Wakeup()]
    listener = PgListener(engine, wakeups)
    listener.start()
    assert listener.listening.wait(10), "the listener did not connect"
    yield wakeups
    listener.stop()


def released() -> list[NewEvent]:
    return [NewEvent(event_id=uuid.uuid4(), event=RolloutReleased(rollout_id=uuid.uuid4()),
                     metadata=EventMetadata(actor="test"))]


def test_an_append_to_a_rollout_stream_wakes_every_loop_and_one_to_another_stream_does_not(
        engine: sa.Engine, wakeups: list[Wakeup]) -> None:
    store = SqlEventStore(engine, default_codec(), SystemClock(), notify_prefixes=(ROLLOUT_STREAMS,))
    store.append("agent-dma-1", 0, released())
    assert not any(wakeup.wait(0.5) for wakeup in wakeups)
    store.append(f"{ROLLOUT_STREAMS}{uuid.uuid4()}", 0, released())
    assert all(wakeup.wait(10) for wakeup in wakeups)


def test_handed_out_upgrades_wake_the_engines_that_claim_them(engine: sa.Engine, wakeups: list[Wakeup]) -> None:
    SqlLeases(engine, SystemClock(), owner="test/coordinator").offer(uuid.uuid4(), [uuid.uuid4()])
    assert wakeups[0].wait(10)
