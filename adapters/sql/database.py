"""Opening the database: URLs, SQLite pragmas, reachability and schema checks, migrations."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event
from sqlalchemy.engine import URL, Engine, make_url

from dma_upgrade.adapters.private_files import PRIVATE_FILE, private_directory
from dma_upgrade.adapters.progress_report import Reporter
from dma_upgrade.engine.errors import InvalidInput, SchemaNotMigrated, StoreUnavailable

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
WRITE = "dma_write"
"""Execution option marking a connection whose transaction writes (SQLite: BEGIN IMMEDIATE)."""
SUPPORTED_DRIVERS = ("sqlite", "sqlite+pysqlite", "postgresql+psycopg")
_URL_FORMS = "sqlite:///FILE or postgresql+psycopg://USER@HOST/DB"
_SQLITE_FILES = ("", "-wal", "-shm")
"""The suffixes of a SQLite database's files in WAL mode: the database, its log and its shared memory."""


def normalise_url(url: str) -> URL:
    """Parse a database URL: ``sqlite:///FILE`` or ``postgresql+psycopg://...`` (plain ``postgresql://`` means the
    psycopg 3 driver); ``InvalidInput`` for anything else, including an in-memory SQLite database, which would
    lose everything it was told when the process ends."""
    try:
        parsed = make_url(url)
    except (sa.exc.ArgumentError, ValueError):  # not echoed: it may hold a password
        raise InvalidInput(f"the database URL is malformed: use {_URL_FORMS}") from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.drivername not in SUPPORTED_DRIVERS:
        raise InvalidInput(f"unsupported database {parsed.drivername!r}: use {_URL_FORMS}")
    if parsed.get_backend_name() == "sqlite" and (parsed.database in (None, "", ":memory:") or "uri" in parsed.query):
        raise InvalidInput(f"{url!r} names no database file: use sqlite:///FILE (an in-memory database would lose "
                           f"everything when the process ends)")
    return parsed


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def create_db_engine(url: str, *, pool_size: int = 15) -> Engine:
    """An engine configured for the event store on SQLite (WAL, busy timeout) or PostgreSQL.

    A SQLite database is private to its owner: missing directories are created 0700, the file 0600 (SQLite gives
    its -wal and -shm files the database file's mode), and existing files this user owns are tightened to 0600
    on every connection. A file that is not a SQLite database raises ``StoreUnavailable``. On PostgreSQL, up to
    ``pool_size`` connections are opened and kept (none beyond: a connection opened for one call and closed after
    it costs the server a process start each time), each in UTF-8 (the store escapes its literals for it) and in
    the UTC time zone (``_in_utc``)."""
    parsed = normalise_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = Path(str(parsed.database))
        try:
            private_directory(path.parent)
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE))
        except FileExistsError:
            pass
        except OSError as error:
            raise StoreUnavailable(f"cannot create the database {path}: {error.strerror}") from None
        engine = sa.create_engine(parsed, connect_args={"timeout": 30, "check_same_thread": False})
        _configure_sqlite(engine, path)
        return engine
    engine = sa.create_engine(parsed, pool_size=pool_size, max_overflow=0, connect_args={"client_encoding": "UTF8"})
    event.listen(engine, "connect", _in_utc)
    _ping_when_idle(engine)
    return engine


PING_AFTER_IDLE_SECONDS = 0.5
"""A pooled connection idle for longer is pinged before it is handed out; one given back sooner is not."""


def _ping_when_idle(engine: Engine) -> None:
    """Pessimistic disconnect handling, as ``pool_pre_ping``, but only for connections that sat idle: a connection
    given back to the pool less than ``PING_AFTER_IDLE_SECONDS`` ago was working a moment ago, and pinging it
    anyway costs a round trip on nearly every read of a busy process (the bypass window of HikariCP, 500 ms by
    default, rests on the same reasoning). A dead idle connection is replaced, and every connection the pool held
    from before is replaced at its next checkout, as ``pool_pre_ping`` does (``InvalidatePoolError`` raised from
    the checkout event). A connection that died within the window fails its caller once, as any connection cut
    while in use does, and leaves the pool."""
    dialect = engine.dialect

    @event.listens_for(engine, "checkin")
    def _returned(_dbapi_connection: Any, record: Any) -> None:
        record.info["returned_at"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _handed_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        returned_at = record.info.get("returned_at")
        if returned_at is None or time.monotonic() - returned_at < PING_AFTER_IDLE_SECONDS:
            return  # new (just connected), or just used
        try:
            dialect.do_ping(dbapi_connection)
        except dialect.loaded_dbapi.Error as error:
            if dialect.is_disconnect(error, dbapi_connection, None):
                raise sa.exc.InvalidatePoolError(f"a pooled connection was found dead: {error}") from error
            raise


def _in_utc(dbapi_connection: Any, _record: Any) -> None:
    """A new PostgreSQL session in UTC: times come back in ``datetime.UTC``, which the driver builds several times
    faster than a time in another zone (a ``ZoneInfo``). Readers convert whatever zone a session has all the same."""
    with dbapi_connection.cursor() as cursor:
        cursor.execute("SET TIME ZONE 'UTC'")
    dbapi_connection.commit()


def _tighten(path: Path) -> None:
    """Make those of the database's files that this user owns 0600 (an older version left them 0644)."""
    for suffix in _SQLITE_FILES:
        file = path.with_name(path.name + suffix)
        with contextlib.suppress(FileNotFoundError):
            status = file.stat()
            if status.st_uid == os.geteuid() and stat.S_IMODE(status.st_mode) & ~PRIVATE_FILE:
                file.chmod(PRIVATE_FILE)


def _configure_sqlite(engine: Engine, path: Path) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself, below
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
        except sqlite3.DatabaseError as error:
            if error.sqlite_errorcode != sqlite3.SQLITE_NOTADB:
                raise
            raise StoreUnavailable(f"cannot open the database {path}: it is not a SQLite database") from None
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()
        _tighten(path)

    @event.listens_for(engine, "begin")
    def _on_begin(connection: sa.Connection) -> None:
        writes = connection.get_execution_options().get(WRITE, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if writes else "BEGIN")


def alembic_config(url: str | None = None) -> Config:
    """The Alembic configuration of the migrations shipped inside this package."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def migrate(engine: Engine, revision: str = "head", reporter: Reporter | None = None) -> None:
    """Bring the schema to ``revision`` through the Alembic migrations; with ``reporter``, one migration at a time,
    telling it how many there are and each one done."""
    config = alembic_config()
    # A write transaction from the start (BEGIN IMMEDIATE on SQLite): processes that find a fresh database
    # at the same moment queue on the lock, and each then reads the revision the one before it left.
    with engine.connect() as connection, connection.execution_options(**{WRITE: True}).begin():
        config.attributes["connection"] = connection
        if reporter is None:
            command.upgrade(config, revision)
            return
        steps = _pending(config, connection, revision)
        reporter.start(len(steps))
        for step in steps:
            command.upgrade(config, step)
            reporter.advance(1)


def _pending(config: Config, connection: sa.Connection, revision: str) -> list[str]:
    """The revisions an upgrade to ``revision`` applies, in the order it applies them."""
    current = MigrationContext.configure(connection).get_current_revision()
    script = ScriptDirectory.from_config(config)
    return [step.revision for step in reversed(list(script.iterate_revisions(revision, current or "base")))]


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    """The schema revision the database is at, raising ``StoreUnavailable`` if it cannot be reached."""
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    except sa.exc.OperationalError as exc:
        raise StoreUnavailable(f"cannot reach the database {describe(engine)}: {first_line(exc)}") from None


def ensure_schema(engine: Engine, *, auto_migrate: bool) -> None:
    """Check the schema is current; migrate it when ``auto_migrate`` (the embedded default)."""
    current = current_revision(engine)
    if current == head_revision():
        return
    if auto_migrate:
        migrate(engine)
        return
    state = "has no schema" if current is None else f"is at schema {current}, not {head_revision()}"
    raise SchemaNotMigrated(f"the database {describe(engine)} {state}: run `dma-upgrade db upgrade`")


def describe(engine: Engine) -> str:
    """The engine's URL without its password."""
    return engine.url.render_as_string(hide_password=True)


def first_line(exc: BaseException) -> str:
    """The first line of an error (a database error's own message, not SQLAlchemy's wrapping), for one-line reports."""
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
