"""Readiness over real HTTP: false (503, with reasons) while the database cannot be read or a projection is
too far behind, true otherwise; liveness stays true throughout."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from dma_upgrade.adapters.access.tokens import Role
from dma_upgrade.adapters.sql.database import create_db_engine, migrate
from tests.conftest import FakeClock
from tests.integration.api.harness import ApiHarness


def readiness(api: ApiHarness) -> tuple[int, dict[str, Any]]:
    response = api.client(None).get("/readyz")
    return response.status_code, response.json()


def assert_unreachable(api: ApiHarness) -> None:
    status, body = readiness(api)
    assert status == 503 and body["ready"] is False and body["database"] is False, body
    assert len(body["reasons"]) == 1 and body["reasons"][0].startswith("database unreachable: "), body
    agents = api.client(Role.VIEWER).get("/api/v1/agents")
    assert agents.status_code == 503 and agents.json() == {
        "error": "unavailable", "detail": "database unreachable: the server's log says why"}, agents.text  # no address
    assert api.client(None).get("/healthz").status_code == 200


def test_ready_when_the_database_answers_and_every_projection_is_caught_up(api: ApiHarness) -> None:
    api.container.projections.catch_up()

    status, body = readiness(api)

    assert status == 200, body
    assert body["ready"] is True and body["database"] is True and body["reasons"] == []
    assert {p["lag_events"] for p in body["projections"]} == {0}


def test_not_ready_while_a_projection_is_further_behind_than_allowed(make_api: Callable[..., ApiHarness]) -> None:
    api = make_api(ready_max_lag_events=3)
    api.container.projections.catch_up()
    assert readiness(api)[0] == 200
    api.add_agents()  # four events

    status, body = readiness(api)
    assert status == 503 and body["ready"] is False and body["database"] is True
    assert "projection progress is catching up (4 events behind)" in body["reasons"]

    api.container.projections.catch_up()
    assert readiness(api)[0] == 200


@pytest.fixture
def sqlite_api(sqlite_url: str, clock: FakeClock, tmp_path: Path) -> Iterator[ApiHarness]:
    api = ApiHarness(sqlite_url, clock, tmp_path)
    api.add_agents()
    yield api
    api.close()


def test_not_ready_while_the_sqlite_file_cannot_be_read_and_ready_once_it_can(sqlite_api: ApiHarness) -> None:
    sqlite_api.container.projections.catch_up()
    database = Path(str(sa.make_url(sqlite_api.settings.resolved_database_url).database))
    files = [database, database.with_name(database.name + "-wal"), database.with_name(database.name + "-shm")]
    saved = {f: f.read_bytes() for f in files}
    for f in files:  # overwritten in place, as a failing disk would: open connections see it too
        with f.open("r+b") as stream:
            stream.write(b"\xff" * len(saved[f]))

    assert_unreachable(sqlite_api)

    for f, data in saved.items():
        with f.open("r+b") as stream:
            stream.write(data)
    assert readiness(sqlite_api)[0] == 200


@pytest.fixture
def own_postgres_url(postgres_server_url: str) -> Iterator[str]:
    """A PostgreSQL database of this test's own (it gets dropped), migrated; gone afterwards."""
    server = sa.make_url(postgres_server_url)
    admin = sa.create_engine(server.set(database="postgres"), isolation_level="AUTOCOMMIT")
    name = f"dma_upgrade_ready_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = server.set(database=name).render_as_string(hide_password=False)
    engine = create_db_engine(url)
    migrate(engine)
    engine.dispose()
    yield url
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


@pytest.mark.postgres
def test_not_ready_while_the_postgresql_database_is_dropped_and_ready_once_it_is_back(
        own_postgres_url: str, clock: FakeClock, tmp_path: Path) -> None:
    api = ApiHarness(own_postgres_url, clock, tmp_path)
    try:
        api.container.projections.catch_up()
        assert readiness(api)[0] == 200
        url = sa.make_url(own_postgres_url)
        admin = sa.create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE "{url.database}" WITH (FORCE)')

        assert_unreachable(api)

        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{url.database}"')
        admin.dispose()
        engine = create_db_engine(own_postgres_url)
        migrate(engine)
        engine.dispose()
        status, body = readiness(api)
        assert status == 200 and body["ready"] is True, body
    finally:
        api.close()

