"""An unreachable or unmigrated database gets one line saying what to do, never a traceback."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.e2e.cli import run_cli


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_an_unreachable_postgresql_is_one_line_and_exit_6() -> None:
    url = f"postgresql+psycopg://postgres@127.0.0.1:{_free_port()}/nowhere"
    result = run_cli("audit", "verify", database_url=url)
    assert result.returncode == 6
    assert result.stderr.startswith("error: cannot reach the database")
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1


@pytest.mark.postgres
def test_an_unmigrated_postgresql_says_to_run_db_upgrade(postgres_url: str) -> None:
    engine = sa.create_engine(postgres_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE SCHEMA IF NOT EXISTS empty_schema")
    engine.dispose()
    url = postgres_url + "?options=-csearch_path%3Dempty_schema"
    result = run_cli("audit", "verify", database_url=url)
    assert result.returncode == 7
    assert "run `dma-upgrade db upgrade`" in result.stderr
    assert "Traceback" not in result.stderr
    upgraded = run_cli("db", "upgrade", database_url=url)
    assert upgraded.returncode == 0, upgraded.stderr
    assert run_cli("audit", "verify", database_url=url).returncode == 0
    engine = sa.create_engine(postgres_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP SCHEMA empty_schema CASCADE")
    engine.dispose()


def test_the_embedded_default_migrates_itself_on_first_use(tmp_path: Path) -> None:
    result = run_cli("audit", "verify", env={"DMA_UPGRADE_DATA_DIR": str(tmp_path / "data")})
    assert result.returncode == 0, result.stderr
    assert "verified 0 events" in result.stdout
    assert (tmp_path / "data" / "dma-upgrade.db").exists()


def test_an_unsupported_database_url_is_refused() -> None:
    result = run_cli("audit", "verify", database_url="mysql://root@localhost/x")
    assert result.returncode == 2
    assert "unsupported database" in result.stderr


def test_states_mermaid_prints_the_diagram_from_the_table() -> None:
    result = run_cli("states", "--mermaid")
    assert result.returncode == 0
    assert "stateDiagram-v2" in result.stdout
    assert "Uploaded --> SNMPStopped: stop_snmp [stops_snmp & !upload_only]" in result.stdout
    assert "Installing --> Cancelled" not in result.stdout
