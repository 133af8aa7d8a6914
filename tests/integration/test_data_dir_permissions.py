"""A SQLite database's three files (database, -wal, -shm) are 0600 while it is in use."""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from dma_upgrade.adapters.sql.database import create_db_engine

SUFFIXES = ("", "-wal", "-shm")


def modes(database: Path) -> list[int]:
    return [stat.S_IMODE(database.with_name(database.name + suffix).stat().st_mode) for suffix in SUFFIXES]


@pytest.fixture(autouse=True)
def permissive_umask() -> Iterator[None]:
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def test_a_new_database_and_its_wal_and_shm_files_are_0600_in_a_0700_directory(tmp_path: Path) -> None:
    database = tmp_path / "new" / "store.db"
    engine = create_db_engine(f"sqlite:///{database}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE notes (text TEXT)")
        conn.exec_driver_sql("INSERT INTO notes VALUES ('kept')")
        assert modes(database) == [0o600] * 3
    engine.dispose()
    assert stat.S_IMODE(database.parent.stat().st_mode) == 0o700


def test_an_older_database_left_0644_in_use_is_tightened_with_its_wal_and_shm(tmp_path: Path) -> None:
    database = tmp_path / "store.db"
    older = sqlite3.connect(database)  # an older version's process, still holding the log open
    older.execute("PRAGMA journal_mode=WAL")
    older.execute("CREATE TABLE notes (text TEXT)")
    older.commit()
    assert modes(database) == [0o644] * 3
    engine = create_db_engine(f"sqlite:///{database}")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM notes").scalar_one() == 0
        assert modes(database) == [0o600] * 3
    engine.dispose()
    older.close()
