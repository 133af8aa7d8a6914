"""Global order equals commit order: a reader tailing the log never skips an event."""

from __future__ import annotations

import random
import threading
import time
import uuid
from datetime import datetime

import pytest

from dma_upgrade.adapters.clock import SystemClock
from dma_upgrade.adapters.sql.database import create_db_engine
from dma_upgrade.adapters.sql.event_store import SqlEventStore
from dma_upgrade.engine.agent_events import AgentRegistered
from dma_upgrade.engine.codec import EventCodec
from dma_upgrade.engine.errors import ConcurrencyConflict
from dma_upgrade.engine.events import NewEvent

WRITERS = 8
APPENDS_PER_WRITER = 25


class JitteryClock(SystemClock):
    """The system clock, read after a random delay: an append reads it inside its writing transaction, after the
    append lock and before the insert and the commit, so every writing transaction lasts a random while."""

    def __init__(self) -> None:
        self._jitter = random.Random(7)

    def now(self) -> datetime:
        time.sleep(self._jitter.uniform(0, 0.01))
        return super().now()


def _tail_while_writing(url: str, codec: EventCodec) -> tuple[list[int], int]:
    engine = create_db_engine(url, pool_size=WRITERS + 2)
    store = SqlEventStore(engine, codec, JitteryClock())
    done = threading.Event()
    seen: list[int] = []
    errors: list[BaseException] = []

    def write(writer: int) -> None:
        try:
            for i in range(APPENDS_PER_WRITER):
                events = [NewEvent(event_id=uuid.uuid4(),
                                   event=AgentRegistered(name=f"w{writer}", address="10.0.0.1",
                                                         version="10.4.9.0-14794"))
                          for _ in range(1 + i % 3)]
                store.append(f"agent-w{writer}", sum(1 + j % 3 for j in range(i)), events)
        except BaseException as exc:
            errors.append(exc)

    def tail() -> None:
        last = 0
        while True:
            finished = done.is_set()
            for recorded in store.read_all(after=last, page_size=7):
                seen.append(recorded.position)
                last = recorded.position
            if finished:
                return

    reader = threading.Thread(target=tail)
    reader.start()
    writers = [threading.Thread(target=write, args=(w,)) for w in range(WRITERS)]
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join()
    done.set()
    reader.join()
    assert not errors, errors
    head = store.head_position()
    engine.dispose()
    return seen, head


@pytest.mark.postgres
def test_a_tailing_reader_sees_every_event_once_in_order_on_postgresql(postgres_url: str,
                                                                       codec: EventCodec) -> None:
    seen, head = _tail_while_writing(postgres_url, codec)
    expected_total = WRITERS * sum(1 + i % 3 for i in range(APPENDS_PER_WRITER))
    assert head == expected_total
    assert seen == list(range(1, expected_total + 1))


def test_a_tailing_reader_sees_every_event_once_in_order_on_sqlite(sqlite_url: str,
                                                                   codec: EventCodec) -> None:
    seen, head = _tail_while_writing(sqlite_url, codec)
    assert seen == list(range(1, head + 1))
    assert head == WRITERS * sum(1 + i % 3 for i in range(APPENDS_PER_WRITER))


def test_two_writers_racing_on_one_stream_one_wins_and_the_other_conflicts(db_url: str,
                                                                           codec: EventCodec) -> None:
    engine = create_db_engine(db_url)
    store = SqlEventStore(engine, codec, SystemClock())
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def race() -> None:
        barrier.wait()
        try:
            store.append("agent-race", 0, [NewEvent(event_id=uuid.uuid4(), event=AgentRegistered(
                name="race", address="10.0.0.9", version="10.4.9.0-14794"))])
            outcomes.append("appended")
        except ConcurrencyConflict:
            outcomes.append("conflict")

    threads = [threading.Thread(target=race) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["appended", "conflict"]
    assert len(store.read_stream("agent-race")) == 1
    engine.dispose()
