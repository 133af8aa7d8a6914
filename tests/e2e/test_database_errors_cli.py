"""An unreachable or unmigrated database gets one line saying what to do, never a traceback."""

from __future__ import annotations

import socket
import stat
import subprocess
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


def one_line(result: subprocess.CompletedProcess[str], code: int, message: str) -> None:
    """``result`` exited ``code`` with one error line on stderr saying ``message``."""
    assert result.returncode == code, result.stderr
    assert result.stderr.startswith(f"error: {message}"), result.stderr
    assert result.stderr.count("\n") == 1


@pytest.fixture
def text_file(tmp_path: Path) -> Path:
    """A file of notes, readable by all, that is no database."""
    notes = tmp_path / "notes.txt"
    notes.write_text("shopping list\n- milk\n")
    notes.chmod(0o644)
    return notes


@pytest.mark.parametrize("command", [("audit", "verify"), ("db", "upgrade"), ("serve", "--port", "0"),
                                     ("serve", "--no-api")],
                         ids=["audit-verify", "db-upgrade", "serve", "serve-no-api"])
def test_a_database_url_naming_a_text_file_is_one_line_exit_6_and_leaves_the_file_alone(
        text_file: Path, command: tuple[str, ...]) -> None:
    result = run_cli(*command, database_url=f"sqlite:///{text_file}", timeout=60)
    one_line(result, 6, f"cannot open the database {text_file}: it is not a SQLite database")
    assert text_file.read_text() == "shopping list\n- milk\n"
    assert stat.S_IMODE(text_file.stat().st_mode) == 0o644
    assert sorted(p.name for p in text_file.parent.iterdir()) == ["notes.txt"]


def test_a_database_under_a_file_is_one_line_exit_6(text_file: Path) -> None:
    result = run_cli("audit", "verify", database_url=f"sqlite:///{text_file}/store.db")
    one_line(result, 6, f"cannot create the database {text_file}/store.db: Not a directory")


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///", "sqlite:///:memory:", "sqlite:///file::memory:?uri=true"])
@pytest.mark.parametrize("command", [("audit", "verify"), ("serve", "--port", "0")], ids=["audit-verify", "serve"])
def test_an_in_memory_sqlite_database_is_refused_rather_than_forgetting_everything(
        url: str, command: tuple[str, ...]) -> None:
    result = run_cli(*command, database_url=url, timeout=60)
    one_line(result, 2, f"{url!r} names no database file: use sqlite:///FILE")


@pytest.mark.parametrize(("url", "message"), [
    ("mysql://root@localhost/x", "unsupported database 'mysql'"),
    ("postgresql+asyncpg://me@localhost/x", "unsupported database 'postgresql+asyncpg'"),
    ("sqlite+pysqlcipher:///x.db", "unsupported database 'sqlite+pysqlcipher'"),
    ("postgresql://me:s3cret@localhost:port/x", "the database URL is malformed"),
    ("postgresql://me:s3cret@[::1/x", "the database URL is malformed"),
    ("no url at all", "the database URL is malformed"),
], ids=["mysql", "other-driver", "other-sqlite-driver", "port-not-a-number", "unclosed-bracket", "not-a-url"])
def test_an_unsupported_or_malformed_database_url_is_one_line_exit_2_without_its_password(url: str,
                                                                                          message: str) -> None:
    result = run_cli("audit", "verify", database_url=url)
    one_line(result, 2, message)
    assert "s3cret" not in result.stderr


def test_states_mermaid_prints_the_diagram_from_the_table() -> None:
    result = run_cli("states", "--mermaid")
    assert result.returncode == 0
    assert "stateDiagram-v2" in result.stdout
    assert "Uploaded --> SNMPStopped: stop_snmp [stops_snmp & !upload_only]" in result.stdout
    assert "Installing --> Cancelled" not in result.stdout


@pytest.mark.parametrize("command", [("audit", "verify"), ("agents", "list"), ("serve", "--no-api")],
                         ids=["audit-verify", "agents-list", "serve-no-api"])
def test_a_damaged_sqlite_database_is_one_line_exit_8(tmp_path: Path, command: tuple[str, ...]) -> None:
    data = {"DMA_UPGRADE_DATA_DIR": str(tmp_path / "data")}
    for number in range(8):
        added = run_cli("agents", "add", f"dma-{number}", "--address", f"10.0.0.{number + 1}",
                        "--version", "10.4.0.0-14112", env=data)
        assert added.returncode == 0, added.stderr
    database = tmp_path / "data" / "dma-upgrade.db"
    with database.open("r+b") as damaged:  # the header page stays: SQLite opens the file and fails inside it
        damaged.seek(3 * 4096)
        damaged.write(bytes(range(256)) * ((database.stat().st_size - 3 * 4096) // 256))
    result = run_cli(*command, env=data, timeout=60)
    one_line(result, 8, "database error: database disk image is malformed")
