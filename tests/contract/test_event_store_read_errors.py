"""The store's reads below SQLAlchemy (``read_stream``, ``read_all``, ``read_records``, ``read_projected``) fail as
a read through SQLAlchemy fails. Invariant: whatever the database refuses, such a read raises SQLAlchemy's
``DBAPIError`` (of the kind the driver's error maps to), never the driver's own error, which the engine's drives,
the API and the CLI would not know (a database that cannot be reached included); and the store reads again as
before once the database can be read."""

from __future__ import annotations

import socket
import sqlite3
import uuid
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa

from dma_upgrade.adapters.sql.database import create_db_engine
from dma_upgrade.adapters.sql.event_store import SqlEventStore
from dma_upgrade.engine.agent_events import AgentRegistered
from dma_upgrade.engine.codec import EventCodec
from dma_upgrade.engine.events import EventMetadata, NewEvent
from tests.conftest import FakeClock

READERS: dict[str, Callable[[SqlEventStore], list[Any]]] = {
    "read_stream": lambda store: store.read_stream("agent-a"),
    "read_all": lambda store: list(store.read_all()),
    "read_records": lambda store: list(store.read_records()),
    "read_projected": lambda store: list(store.read_projected()),
}


def _rename(engine: sa.Engine, old: str, new: str) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text(f"ALTER TABLE {old} RENAME TO {new}"))


@pytest.mark.parametrize("reader", READERS)
def test_a_read_the_database_cannot_answer_raises_sqlalchemys_error_and_the_store_reads_again_after(
        db_engine: sa.Engine, codec: EventCodec, clock: FakeClock, reader: str) -> None:
    store, read = SqlEventStore(db_engine, codec, clock), READERS[reader]
    store.append("agent-a", 0, [NewEvent(event_id=uuid.uuid4(), metadata=EventMetadata(actor="test"),
                                         event=AgentRegistered(name="a", address="10.0.0.1", version="10.4.0.0-1"))])
    before = read(store)
    assert len(before) == 1
    _rename(db_engine, "events", "events_away")
    try:
        with pytest.raises(sa.exc.DBAPIError) as raised:
            read(store)
    finally:
        _rename(db_engine, "events_away", "events")
    assert isinstance(raised.value.orig, sqlite3.Error | psycopg.Error)  # the driver's error, kept as the cause
    assert "events" in str(raised.value)
    assert read(store) == before


@pytest.mark.parametrize("reader", READERS)
def test_a_read_when_the_database_cannot_be_reached_raises_sqlalchemys_error(
        codec: EventCodec, clock: FakeClock, reader: str) -> None:
    with socket.socket() as probe:  # a port that was free a moment ago: nothing answers there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    engine = create_db_engine(f"postgresql+psycopg://nobody@127.0.0.1:{port}/dma")
    try:
        with pytest.raises(sa.exc.OperationalError) as raised:
            READERS[reader](SqlEventStore(engine, codec, clock))
        assert isinstance(raised.value.orig, psycopg.OperationalError)
    finally:
        engine.dispose()
