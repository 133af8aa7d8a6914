"""Shared fixtures: a fake clock, real SQLite files, and a real PostgreSQL database per test run.

PostgreSQL tests read ``DMA_UPGRADE_TEST_POSTGRES_URL`` (a server URL, e.g.
``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``); the run creates its own database there
and drops it at the end. Without the variable they skip, saying why, unless
``DMA_UPGRADE_REQUIRE_POSTGRES`` is set (as CI does): then they fail.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from dma_upgrade.adapters.memory.event_store import InMemoryEventStore
from dma_upgrade.adapters.sql.database import create_db_engine, migrate
from dma_upgrade.adapters.sql.event_store import SqlEventStore
from dma_upgrade.engine.catalog import default_codec
from dma_upgrade.engine.codec import EventCodec

POSTGRES_ENV = "DMA_UPGRADE_TEST_POSTGRES_URL"
SKIP_POSTGRES = f"PostgreSQL tests need {POSTGRES_ENV} (a server URL); it is not set"


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, start: datetime | None = None) -> None:
        self.current = start or datetime(2026, 11, 30, 9, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self.current

    def advance(self, seconds: float) -> None:
        self.current += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def codec() -> EventCodec:
    return default_codec()


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """A fresh database on the test PostgreSQL server, dropped when the run ends."""
    server = os.environ.get(POSTGRES_ENV)
    if not server:
        if os.environ.get("DMA_UPGRADE_REQUIRE_POSTGRES"):
            pytest.fail(f"DMA_UPGRADE_REQUIRE_POSTGRES is set but {POSTGRES_ENV} is not")
        pytest.skip(SKIP_POSTGRES)
    admin = sa.create_engine(sa.make_url(server).set(drivername="postgresql+psycopg"),
                             isolation_level="AUTOCOMMIT")
    name = f"dma_upgrade_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = sa.make_url(server).set(drivername="postgresql+psycopg", database=name)
    rendered = url.render_as_string(hide_password=False)
    engine = create_db_engine(rendered)
    migrate(engine)
    engine.dispose()
    yield rendered
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


def _truncate_all(url: str) -> None:
    engine = create_db_engine(url)
    with engine.begin() as conn:
        tables = [t for t in sa.inspect(conn).get_table_names() if t != "alembic_version"]
        if tables:
            conn.exec_driver_sql("TRUNCATE " + ", ".join(f'"{t}"' for t in tables))
    engine.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A migrated SQLite file of its own."""
    url = f"sqlite:///{tmp_path / 'store.db'}"
    engine = create_db_engine(url)
    migrate(engine)
    engine.dispose()
    return url


@pytest.fixture
def postgres_url(postgres_server_url: str) -> str:
    """The run's PostgreSQL database, emptied for this test."""
    _truncate_all(postgres_server_url)
    return postgres_server_url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> str:
    """A migrated, empty database: a SQLite file, then the PostgreSQL test database."""
    return str(request.getfixturevalue(f"{request.param}_url"))


@pytest.fixture
def db_engine(db_url: str) -> Iterator[sa.Engine]:
    engine = create_db_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def event_store(request: pytest.FixtureRequest, codec: EventCodec,
                clock: FakeClock) -> Iterator[InMemoryEventStore | SqlEventStore]:
    """Every implementation of the event store port, one after the other."""
    if request.param == "memory":
        yield InMemoryEventStore(codec, clock)
        return
    engine = create_db_engine(request.getfixturevalue(f"{request.param}_url"))
    yield SqlEventStore(engine, codec, clock)
    engine.dispose()
