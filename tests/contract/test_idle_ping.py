"""Pooled PostgreSQL connections are pinged only when they sat idle (``database._ping_when_idle``). Invariants: a
connection idle past the window that died is replaced before anyone uses it (the read goes through); one given
back within the window is handed out without a round trip; one that died within the window fails one caller
with SQLAlchemy's error, leaves the pool, and the next read goes through."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import sqlalchemy as sa

from dma_upgrade.adapters.sql import database
from dma_upgrade.adapters.sql.event_store import SqlEventStore
from dma_upgrade.engine.agent_events import AgentRegistered
from dma_upgrade.engine.catalog import default_codec
from dma_upgrade.engine.events import NewEvent
from tests.conftest import FakeClock

pytestmark = pytest.mark.postgres


@pytest.fixture
def pings(engine: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The pings sent, counted (the dialect's own ping still runs)."""
    sent: list[int] = []
    ping = engine.dialect.do_ping

    def counted(dbapi_connection: Any) -> bool:
        sent.append(1)
        return ping(dbapi_connection)

    monkeypatch.setattr(engine.dialect, "do_ping", counted)
    return sent


def _backend(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one())


def _terminate(pid: int, url: str) -> None:
    other = sa.create_engine(url)
    with other.connect() as conn:
        assert conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar_one()
    other.dispose()


def _store_with_an_agent(engine: sa.Engine) -> SqlEventStore:
    store = SqlEventStore(engine, default_codec(), FakeClock())
    store.append("agent-a", 0, [NewEvent(event_id=uuid.uuid4(), event=AgentRegistered(
        name="a", address="10.0.0.1", version="10.4.0.0-1"))])
    return store


def test_a_connection_given_back_within_the_window_is_handed_out_without_a_ping(
        engine: sa.Engine, pings: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(database, "PING_AFTER_IDLE_SECONDS", 3600.0)
    first = _backend(engine)  # a new connection: not pinged either
    assert [_backend(engine) for _ in range(5)] == [first] * 5
    assert pings == []


def test_an_idle_connection_that_died_is_replaced_before_it_is_used(
        engine: sa.Engine, pings: list[int], postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    store = _store_with_an_agent(engine)
    monkeypatch.setattr(database, "PING_AFTER_IDLE_SECONDS", 0.0)  # every connection given back counts as idle
    dead = _backend(engine)
    _terminate(dead, postgres_url)

    assert [r.stream_id for r in store.read_stream("agent-a")] == ["agent-a"]
    assert pings, "the idle connection was handed out unpinged"
    assert _backend(engine) != dead


def test_a_connection_that_died_within_the_window_fails_one_read_and_leaves_the_pool(
        engine: sa.Engine, pings: list[int], postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    store = _store_with_an_agent(engine)
    monkeypatch.setattr(database, "PING_AFTER_IDLE_SECONDS", 3600.0)
    dead = _backend(engine)
    _terminate(dead, postgres_url)

    with pytest.raises(sa.exc.OperationalError):
        store.read_stream("agent-a")
    assert [r.stream_id for r in store.read_stream("agent-a")] == ["agent-a"]
    assert _backend(engine) != dead
    assert pings == []
