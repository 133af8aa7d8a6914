"""Hostile text in an append on PostgreSQL, whose appends send their values as SQL literals escaped by libpq
(``SqlEventStore._write_postgres``). Invariants: whatever a stream id, actor or payload holds, it is stored as
given or refused with an error of its own append; it never runs as SQL, never fails another append of its group,
and the chain still verifies."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC

import pytest
import sqlalchemy as sa

from dma_upgrade.adapters.clock import SystemClock
from dma_upgrade.adapters.sql.database import create_db_engine
from dma_upgrade.adapters.sql.event_store import SqlEventStore
from dma_upgrade.adapters.sql.group_commit import PendingAppend
from dma_upgrade.engine.agent_events import AgentRegistered
from dma_upgrade.engine.catalog import default_codec
from dma_upgrade.engine.errors import InvalidInput
from dma_upgrade.engine.event_log import prepare_events
from dma_upgrade.engine.events import EventMetadata, NewEvent
from dma_upgrade.engine.hashchain import verify_chain
from dma_upgrade.engine.ports import AppendResult

pytestmark = pytest.mark.postgres

ESCAPE = "中']::text[], NULL) WHERE false; CREATE TABLE pwned(); --"
"""Text that ends the literal it is in when the client encoding is GBK, where libpq reads the byte before a quote
as the first half of a character."""


@pytest.fixture(params=["", "?client_encoding=gbk"], ids=["utf8", "gbk-in-url"])
def store(postgres_url: str, request: pytest.FixtureRequest) -> Iterator[SqlEventStore]:
    engine = create_db_engine(postgres_url + request.param)
    yield SqlEventStore(engine, default_codec(), SystemClock())
    engine.dispose()


def registered(name: str, actor: str = "test") -> list[NewEvent]:
    return [NewEvent(event_id=uuid.uuid4(), event=AgentRegistered(name=name, address="10.0.0.1", version="10.4.0.0-1"),
                     metadata=EventMetadata(actor=actor))]


def pending(store: SqlEventStore, stream_id: str, events: list[NewEvent]) -> PendingAppend:
    return PendingAppend(stream_id, 0, events, prepare_events(default_codec(), stream_id, events))


@pytest.mark.parametrize("text", [ESCAPE, "quote ' and backslash \\ and $$ and $function$", "emoji 🛰️ é ß \u2028"])
def test_hostile_text_is_stored_as_given_and_never_runs(store: SqlEventStore, text: str) -> None:
    store.append(f"agent-{text}", 0, registered(text, actor=text))
    [event] = store.read_stream(f"agent-{text}")
    assert (event.event.name, event.metadata.actor) == (text, text)  # type: ignore[attr-defined]
    with store.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT to_regclass('pwned')")).scalar() is None
    assert verify_chain(store.read_records()).ok


def test_an_append_the_database_refuses_fails_alone_in_its_group(store: SqlEventStore) -> None:
    refused = pending(store, "agent-nul", registered("nul", actor="a\x00b"))
    accepted = pending(store, "agent-fine", registered("fine"))
    store._write_group([refused, accepted])  # one group, as threads appending at once make it
    assert isinstance(refused.error, InvalidInput) and "NUL" in str(refused.error)
    assert accepted.outcome() == AppendResult(positions=(1,), stream_version=1)
    assert [r.stream_id for r in store.read_all()] == ["agent-fine"]


def test_times_are_read_in_utc_whatever_the_database_zone(postgres_url: str) -> None:
    admin = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        database = conn.execute(sa.text("SELECT current_database()")).scalar_one()
        conn.execute(sa.text(f'ALTER DATABASE "{database}" SET timezone = \'Asia/Kolkata\''))
    try:
        engine = create_db_engine(postgres_url)
        store = SqlEventStore(engine, default_codec(), SystemClock())
        store.append("agent-a", 0, registered("a"))
        [event] = store.read_stream("agent-a")
        [record] = store.read_records()
        assert event.recorded_at.tzinfo is UTC and record.recorded_at == event.recorded_at
        assert abs((event.recorded_at - SystemClock().now()).total_seconds()) < 60
        engine.dispose()
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'ALTER DATABASE "{database}" RESET timezone'))
        admin.dispose()


def test_a_read_the_database_refuses_raises_sqlalchemys_error_as_every_read_does(store: SqlEventStore) -> None:
    with pytest.raises(sa.exc.DataError, match="NUL"):  # the API answers it 400, the engine's drives as any
        store.read_stream("agent-a\x00b")
