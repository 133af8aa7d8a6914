"""The SQL store keeps one connection for its appends between them (no pool checkout and liveness ping per
append): a kept connection that died while idle, or lost the statements prepared on it, costs nothing but a
reconnect, and the append goes through once, on a fresh connection."""

from __future__ import annotations

import socket
import uuid

import pytest
import sqlalchemy as sa

from dma_upgrade.adapters.sql.database import create_db_engine
from dma_upgrade.adapters.sql.event_store import SqlEventStore
from dma_upgrade.adapters.sql.group_commit import PendingAppend
from dma_upgrade.engine.agent_events import AgentRegistered
from dma_upgrade.engine.catalog import default_codec
from dma_upgrade.engine.errors import ConcurrencyConflict, StoreUnavailable
from dma_upgrade.engine.event_log import prepare_events
from dma_upgrade.engine.events import NewEvent
from dma_upgrade.engine.hashchain import verify_chain
from tests.conftest import FakeClock


def registered(name: str) -> list[NewEvent]:
    return [NewEvent(event_id=uuid.uuid4(), event=AgentRegistered(name=name, address="10.0.0.1", version="10.4.0.0-1"))]


def writer_pid(store: SqlEventStore) -> int:
    """The server process of the store's kept connection."""
    writer = store._writer
    assert writer is not None
    return int(writer.driver_connection.info.backend_pid)  # type: ignore[union-attr]


@pytest.mark.postgres
def test_an_append_after_the_kept_connection_was_killed_while_idle_goes_through_once(engine: sa.Engine) -> None:
    store = SqlEventStore(engine, default_codec(), FakeClock())
    store.append("agent-a", 0, registered("a"))
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": writer_pid(store)}).scalar_one()

    result = store.append("agent-b", 0, registered("b"))

    assert result.positions == (2,)
    assert [(r.stream_id, r.position) for r in store.read_all()] == [("agent-a", 1), ("agent-b", 2)]
    assert verify_chain(store.read_records()).ok


@pytest.mark.postgres
def test_an_append_after_the_prepared_statements_were_dropped_goes_through_once(engine: sa.Engine) -> None:
    store = SqlEventStore(engine, default_codec(), FakeClock())
    store.append("agent-a", 0, registered("a"))
    writer = store._writer  # the kept connection, as a DISCARD ALL would leave it
    assert writer is not None
    writer.driver_connection.execute("DEALLOCATE ALL")  # type: ignore[union-attr]
    writer.driver_connection.commit()  # type: ignore[union-attr]

    assert store.append("agent-b", 0, registered("b")).positions == (2,)
    assert store.append("agent-a", 1, registered("a2")).positions == (3,)
    assert verify_chain(store.read_records()).ok


@pytest.mark.postgres
def test_an_append_to_an_unreachable_server_is_store_unavailable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    engine = create_db_engine(f"postgresql+psycopg://postgres@127.0.0.1:{port}/nowhere")
    try:
        with pytest.raises(StoreUnavailable):
            SqlEventStore(engine, default_codec(), FakeClock()).append("agent-a", 0, registered("a"))
    finally:
        engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_a_large_group_with_a_stale_append_in_it_is_written_in_order_and_chained(
        request: pytest.FixtureRequest, backend: str) -> None:
    """More streams and rows in one group than the statements prepared for a group take (the group commit forms
    such a group when many threads append at once)."""
    engine = create_db_engine(request.getfixturevalue(f"{backend}_url"))
    try:
        store = SqlEventStore(engine, default_codec(), FakeClock())
        store.append("agent-0", 0, registered("first"))
        group = [PendingAppend(f"agent-{i}", 0, events, prepare_events(default_codec(), f"agent-{i}", events))
                 for i in range(40) for events in [registered(str(i)) + registered(f"{i}b")]]
        store._write_group(group)

        assert isinstance(group[0].error, ConcurrencyConflict)  # agent-0 is at version 1
        assert [p.outcome().positions for p in group[1:]] == [(2 * i, 2 * i + 1) for i in range(1, 40)]
        assert store.head_position() == 79
        assert verify_chain(store.read_records()).ok
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_disposing_the_engine_closes_the_kept_writer_connection(engine: sa.Engine, postgres_url: str) -> None:
    store = SqlEventStore(engine, default_codec(), FakeClock())
    store.append("agent-a", 0, registered("a"))
    pid = writer_pid(store)

    engine.dispose()

    watcher = create_db_engine(postgres_url)
    try:
        with watcher.connect() as conn:
            alive = conn.execute(sa.text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid})
            assert alive.scalar_one() == 0, "the writer's server process outlived the disposed engine"
    finally:
        watcher.dispose()
    assert store.append("agent-b", 0, registered("b")).positions == (2,)  # a disposed engine connects again
