"""``SqlEventStore``: the event store port on SQLAlchemy 2 Core, for SQLite and PostgreSQL.

Appends are serialised so that global order equals commit order: SQLite has a single writer
(``BEGIN IMMEDIATE``), PostgreSQL takes a transaction-scoped advisory lock before reading the head, inside the
one statement that appends (the server function ``dma_append``), so no round trip to a process is ever made
while it is held.
Positions are assigned under that lock, so they have no gaps and a tailing reader never skips one.
Inside a process, appends arriving while another is written are written together in the next
transaction (``group_commit``): one writer at a time, threads queue on it rather than on SQLite's busy
timeout, and a commit's wait for the disk is shared by every append of its group.

The append and read paths run on the driver's connection, below SQLAlchemy's statement layer (issue 17): a
group is written on a connection the store keeps (no pool checkout and ping per append), on PostgreSQL in one
round trip (``_write_postgres``); pages are read as the driver gives rows.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import partial
from typing import Any, NamedTuple, cast
from uuid import UUID, SafeUUID

import psycopg
import sqlalchemy as sa
from psycopg.pq import Escaping
from sqlalchemy.engine import Engine
from sqlalchemy.pool import PoolProxiedConnection

from dma_upgrade.adapters.sql.database import describe, is_sqlite
from dma_upgrade.adapters.sql.group_commit import GroupCommit, PendingAppend
from dma_upgrade.adapters.sql.schema import events
from dma_upgrade.adapters.sql.wakeups import CHANNEL
from dma_upgrade.engine.codec import EventCodec
from dma_upgrade.engine.errors import DmaUpgradeError, InvalidInput, StoreUnavailable
from dma_upgrade.engine.event_log import duplicate_ids, prepare_events, resolve_stale_append
from dma_upgrade.engine.events import Event, EventMetadata, NewEvent, RecordedEvent, StoredRecord
from dma_upgrade.engine.hashchain import GENESIS_HASH, chain_hash, utc_timestamp
from dma_upgrade.engine.ports import AppendResult, Clock

APPEND_LOCK_KEY = 0x444D4155  # "DMAU": the PostgreSQL advisory lock that serialises appends

_COLUMNS = (events.c.position, events.c.event_id, events.c.stream_id, events.c.stream_version,
            events.c.event_type, events.c.schema_version, events.c.payload, events.c.actor,
            events.c.correlation_id, events.c.causation_id, events.c.recorded_at, events.c.hash)
_HEAD = ("SELECT (SELECT position FROM events ORDER BY position DESC LIMIT 1), "
         "(SELECT hash FROM events ORDER BY position DESC LIMIT 1){versions}")
_STREAM_VERSION = ", (SELECT max(stream_version) FROM events WHERE stream_id = ?)"


@functools.lru_cache(maxsize=64)
def _sqlite_head(streams: int) -> str:
    """One statement on SQLite's append path: the head's position and hash (None in an empty store), then the
    version of each of ``streams`` streams (None for a new one); each a scalar subquery answered from an index."""
    return _HEAD.format(versions=_STREAM_VERSION * streams)


_SQLITE_INSERT = ("INSERT INTO events (position, event_id, stream_id, stream_version, event_type, schema_version, "
                  "payload, actor, correlation_id, causation_id, recorded_at, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, "
                  "?, ?, ?)")
_PG_APPEND_ARRAYS = ("text", "integer", "integer", "boolean", "uuid", "text", "integer", "text", "text", "uuid", "uuid",
                     "text", "text")
"""The types of ``dma_append``'s arrays: per append its stream, expected version, event count and wake-up; per event
its id, type, schema version, payload, actor, correlation, causation and the two canonical parts."""
_PG_APPEND = (f"SELECT first_position, actual_version FROM dma_append({APPEND_LOCK_KEY:d}, "
              + "".join(f"ARRAY[{{}}]::{kind}[], " for kind in _PG_APPEND_ARRAYS)
              + f"{{}}::timestamptz, {{}}, '{CHANNEL}')")
"""The append of a group on PostgreSQL: one statement, run by the server function of migration 0012, its values
given as SQL literals escaped by libpq (``_pg_literals``): psycopg's array dumpers, written in Python, cost several
times more."""


def _pg_literals(driver: psycopg.Connection[Any]) -> Callable[[str], str]:
    """Strings as SQL literals, escaped by libpq (``PQescapeLiteral``) for this connection's settings, which must
    be UTF-8 (``database.create_db_engine`` asks for it): in a client encoding such as GBK, libpq reads a quote
    after some characters as part of them."""
    if driver.info.encoding != "utf-8":
        raise StoreUnavailable(f"the connection's client encoding is {driver.info.encoding}, not UTF-8")
    escaping = Escaping(driver.pgconn)

    def literal(value: str) -> str:
        if "\x00" in value:
            raise psycopg.DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes")
        return escaping.escape_literal(value.encode()).decode()

    return literal


def _pg_uuid(value: str | None) -> str:
    """A UUID (as ``str(uuid)`` writes it, from a ``UUID``) or none as a SQL literal."""
    return "NULL" if value is None else f"'{value}'"


_STORED_IDS = "SELECT event_id, stream_id, stream_version, position FROM events WHERE event_id {ids}"
_SQLITE_STORED_IDS = _STORED_IDS.format(ids="IN ({})")
_PG_STORED_IDS = _STORED_IDS.format(ids="= ANY(%s)")
_ENVELOPE_COLUMNS = ("position, event_id, stream_id, stream_version, event_type, schema_version, payload, actor, "
                     "correlation_id, causation_id, recorded_at")
_RECORD_COLUMNS = f"{_ENVELOPE_COLUMNS}, hash"
_PROJECTED_COLUMNS = "position, stream_id, event_type, schema_version, payload, actor, recorded_at"
_SQLITE_PAGE = "SELECT {columns} FROM events WHERE position > ? ORDER BY position LIMIT ?"
_PG_PAGE = "SELECT {columns} FROM events WHERE position > %s AND position <= %s ORDER BY position"
_STREAM = "SELECT {columns} FROM events WHERE stream_id = {p} AND stream_version > {p} ORDER BY stream_version"
_SQLITE_STREAM = _STREAM.format(columns=_ENVELOPE_COLUMNS, p="?")
_PG_NEXT_POSITION = "SELECT position FROM events WHERE position > %s ORDER BY position LIMIT 1"
"""A page of the log, sent as plain SQL: rows come back as the driver gives them, converted below per dialect."""


_PG_STREAM = _STREAM.format(columns=_ENVELOPE_COLUMNS, p="%s")


_SHARED_PAYLOAD_CHARS = 400
_SHARED_ENTRIES = 4096
"""Decoded events of payloads up to ``_SHARED_PAYLOAD_CHARS`` long, and metadata, are reused while reading
(up to ``_SHARED_ENTRIES`` of each): an install phase, a step succeeded or an engine's metadata repeat a lot."""


_new = object.__new__
_set = object.__setattr__


def _uuid_from_text(value: str) -> UUID:
    """A UUID as SQLAlchemy stores it in SQLite (32 hex digits), without ``UUID()``'s parsing of other forms."""
    uuid = _new(UUID)
    _set(uuid, "int", int(value, 16))
    _set(uuid, "is_safe", _UNKNOWN_SAFETY)
    return uuid


_UNKNOWN_SAFETY = SafeUUID.unknown
"""Read once: an enum member's lookup is a descriptor call, a cost on every UUID read."""


def _uuid_as_text(value: str) -> str:
    """A UUID's text as SQLAlchemy stores it in SQLite: 32 hex digits."""
    return value.replace("-", "")


def _utc_as_text(value: datetime) -> str:
    """A timestamp as SQLAlchemy stores it in SQLite: in UTC, as text without an offset."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%d %H:%M:%S.%f")


def _utc_from_text(value: str) -> datetime:
    """A timestamp as SQLAlchemy stores it in SQLite: ISO 8601 text in UTC, without an offset."""
    return datetime.fromisoformat(value + "+00:00")


_ENVELOPE_FIELDS = set(RecordedEvent.model_fields)
"""Every envelope's fields set: one set shared, as ``model_construct(_fields_set=...)`` would share it."""


def envelope(position: int, event_id: UUID, stream_id: str, stream_version: int, event: Event,
             metadata: EventMetadata, recorded_at: datetime) -> RecordedEvent:
    """A ``RecordedEvent`` of trusted values: what ``RecordedEvent.model_construct`` builds, a few times faster
    (pydantic's model state set directly: the fields, the fields set, no extra, no private attributes)."""
    recorded = _new(RecordedEvent)
    _set(recorded, "__dict__", {"position": position, "event_id": event_id, "stream_id": stream_id,
                                "stream_version": stream_version, "event": event, "metadata": metadata,
                                "recorded_at": recorded_at})
    _set(recorded, "__pydantic_fields_set__", _ENVELOPE_FIELDS)
    _set(recorded, "__pydantic_extra__", None)
    _set(recorded, "__pydantic_private__", None)
    return recorded


_METADATA_FIELDS = set(EventMetadata.model_fields)
_RECORD_FIELDS = set(StoredRecord.model_fields)


def stored_record(position: int, event_id: UUID, stream_id: str, stream_version: int, event_type: str,
                  schema_version: int, payload: str, metadata: EventMetadata, recorded_at: datetime,
                  digest: str) -> StoredRecord:
    """A ``StoredRecord`` of trusted values, as ``envelope`` builds a ``RecordedEvent``."""
    record = _new(StoredRecord)
    _set(record, "__dict__", {"position": position, "event_id": event_id, "stream_id": stream_id,
                              "stream_version": stream_version, "event_type": event_type,
                              "schema_version": schema_version, "payload": payload, "metadata": metadata,
                              "recorded_at": recorded_at, "hash": digest})
    _set(record, "__pydantic_fields_set__", _RECORD_FIELDS)
    _set(record, "__pydantic_extra__", None)
    _set(record, "__pydantic_private__", None)
    return record


def metadata_of(actor: str, correlation_id: UUID | None, causation_id: UUID | None) -> EventMetadata:
    """An ``EventMetadata`` of trusted values, as ``envelope`` builds a ``RecordedEvent``: what
    ``EventMetadata.model_construct`` builds with every field given, a few times faster."""
    metadata = _new(EventMetadata)
    _set(metadata, "__dict__", {"actor": actor, "correlation_id": correlation_id, "causation_id": causation_id})
    _set(metadata, "__pydantic_fields_set__", _METADATA_FIELDS)
    _set(metadata, "__pydantic_extra__", None)
    _set(metadata, "__pydantic_private__", None)
    return metadata


class NotDecoded(Event):
    """In place of an event its reader did not ask for (``read_projected``): it was not decoded."""

    event_type = "NotDecoded"


NOT_DECODED = NotDecoded()


class ProjectedEvent(NamedTuple):
    """A recorded event as projections read it (``projections.base.Recorded``): of its metadata only the actor,
    and without the event id and the stream version, which no projection reads, so a replay neither fetches
    nor parses them."""

    position: int
    stream_id: str
    event: Event
    actor: str
    recorded_at: datetime


def _as_given(value: Any) -> Any:
    """PostgreSQL's driver already gives UUIDs."""
    return value


def _in_utc(value: datetime) -> datetime:
    """A time read from PostgreSQL: in ``datetime.UTC`` already in a session in UTC (``database.create_db_engine``
    sets it), which the driver builds several times faster than a time in another zone (a ``ZoneInfo``)."""
    return value if value.tzinfo is UTC else value.astimezone(UTC)


def record_from_row(row: Sequence[Any]) -> StoredRecord:
    """A stored record from a row selected with the events table's columns in table order."""
    (position, event_id, stream_id, stream_version, event_type, schema_version, payload, actor,
     correlation_id, causation_id, recorded_at, digest) = row
    if recorded_at.tzinfo is None:
        recorded_at = recorded_at.replace(tzinfo=UTC)
    return StoredRecord.model_construct(
        position=position, event_id=event_id, stream_id=stream_id, stream_version=stream_version,
        event_type=event_type, schema_version=schema_version, payload=payload,
        metadata=EventMetadata.model_construct(actor=actor, correlation_id=correlation_id,
                                               causation_id=causation_id),
        recorded_at=recorded_at, hash=digest,
    )


class _Attempt:
    """How far one write of a group went: whether it may be written again if its kept connection was lost (on
    SQLite, until the commit is sent; on PostgreSQL, always: see ``_write_postgres``), and whether its connection
    is lost (to be dropped rather than kept)."""

    def __init__(self) -> None:
        self.may_retry = True
        self.connection_lost = False


class SqlEventStore:
    """The event store in the ``events`` table of a SQLite or PostgreSQL database."""

    def __init__(self, engine: Engine, codec: EventCodec, clock: Clock, *,
                 notify_prefixes: tuple[str, ...] = ()) -> None:
        """``notify_prefixes``: appends to streams whose id starts with one of them send a wake-up to the
        listening engine processes as they commit (PostgreSQL only)."""
        self._engine = engine
        self._notify_prefixes = () if is_sqlite(engine) else notify_prefixes
        self._codec = codec
        self._clock = clock
        self._sqlite = is_sqlite(engine)
        self._group_commit = GroupCommit(self._write_group)
        self._writer: PoolProxiedConnection | None = None
        """The connection appends are written on, kept between them (``_write``); closed when the engine is
        disposed (``_drop_writer``), as the pool's own connections are."""
        sa.event.listen(engine, "engine_disposed", self._drop_writer)
        self._uuid: Callable[[Any], UUID] = _uuid_from_text if self._sqlite else _as_given
        self._correlation: Callable[[Any], UUID] = self._shared_uuid if self._sqlite else _as_given
        """A correlation id of a row: one a rollout's events share, parsed once from SQLite's text."""
        self._uuids: dict[str, UUID] = {}
        self._stored_uuid: Callable[[str], str] = _uuid_as_text if self._sqlite else _as_given
        """A UUID's text (as ``str(uuid)`` writes it) as the append stores it."""
        self._stored_time: Callable[[datetime], Any] = _utc_as_text if self._sqlite else _as_given
        self._time: Callable[[Any], datetime] = _utc_from_text if self._sqlite else _in_utc
        self._events: dict[tuple[str, int, str], Event] = {}
        self._metadatas: dict[tuple[str, Any], EventMetadata] = {}

    @property
    def engine(self) -> Engine:
        return self._engine

    def _drop_writer(self, _: Engine) -> None:
        """Close the kept writer's connection: ``Engine.dispose`` closes only the connections in its pool, and a
        disposed engine (closed at the end of a command, or before a fork) must leave none open."""
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.invalidate()

    def append(self, stream_id: str, expected_version: int, events_: Sequence[NewEvent]) -> AppendResult:
        if not events_:
            return AppendResult(positions=(), stream_version=expected_version)
        return self._group_commit.append(PendingAppend(stream_id, expected_version, events_,
                                                       prepare_events(self._codec, stream_id, events_)))

    def _write_group(self, group: list[PendingAppend]) -> None:
        """Write a group of appends in one transaction; if the database refuses it, each on its own.

        Written on the driver's connection, without SQLAlchemy's statement layer, on a connection the store keeps
        for its appends (``_writer``)."""
        dbapi = self._engine.dialect.loaded_dbapi
        try:
            outcomes = self._write(group)
        except (dbapi.IntegrityError, dbapi.OperationalError, dbapi.InternalError, dbapi.DataError,  # the driver
                UnicodeError, sa.exc.OperationalError, sa.exc.InternalError, sa.exc.TimeoutError) as error:  # the pool
            if len(group) > 1:  # one append the database refuses does not fail the others of its group
                for pending in group:
                    self._write_group([pending])
                return
            pending = group[0]
            if isinstance(error, dbapi.IntegrityError):
                pending.error = duplicate_ids(pending.stream_id, [e.event_id for e in pending.events])
            elif isinstance(error, dbapi.DataError | UnicodeError):
                pending.error = InvalidInput(f"cannot store an append to {pending.stream_id!r}: {error}")
            else:
                pending.error = StoreUnavailable(
                    f"cannot append to {describe(self._engine)}: {getattr(error, 'orig', error)}")
            return
        for pending, outcome in zip(group, outcomes, strict=True):
            if isinstance(outcome, AppendResult):
                pending.result = outcome
            else:
                pending.error = outcome

    def _write(self, group: list[PendingAppend]) -> list[AppendResult | DmaUpgradeError]:
        """Write ``group`` on the writer's connection, kept from one group to the next (only the group commit's
        leader writes, one at a time): no pool checkout, and so no liveness ping, per append. A connection that
        fails is dropped; if it was a kept one (it died while idle) and the write may be retried (``_Attempt``):
        once more on a fresh one."""
        fresh = self._writer is None
        connection = self._engine.raw_connection() if self._writer is None else self._writer
        self._writer = None  # kept again only once this group is through
        attempt = _Attempt()
        try:
            outcomes = (self._write_sqlite if self._sqlite else self._write_postgres)(connection, group, attempt)
        except BaseException:
            if attempt.may_retry and attempt.connection_lost and not fresh:
                return self._write(group)
            raise
        finally:
            if attempt.connection_lost:
                connection.invalidate()
            else:
                self._writer = connection
        return outcomes

    def _write_sqlite(self, connection: PoolProxiedConnection, group: list[PendingAppend],
                      attempt: _Attempt) -> list[AppendResult | DmaUpgradeError]:
        """``BEGIN IMMEDIATE`` (a writer from the start), the head read, the insert, the commit."""
        driver = cast(sqlite3.Connection, connection.driver_connection)
        cursor = driver.cursor()
        try:
            cursor.execute("BEGIN IMMEDIATE")
            streams = list({p.stream_id: None for p in group})
            head = cursor.execute(_sqlite_head(len(streams)), streams).fetchone()
            outcomes, rows = self._chain_group(group, streams, head, cursor)
            if rows:
                cursor.executemany(_SQLITE_INSERT, rows)
            attempt.may_retry = False
            cursor.execute("COMMIT")
        except BaseException:
            try:
                if driver.in_transaction:
                    driver.rollback()
            except sqlite3.Error:
                attempt.connection_lost = True
            raise
        finally:
            cursor.close()
        return outcomes

    def _write_postgres(self, connection: PoolProxiedConnection, group: list[PendingAppend],
                        attempt: _Attempt) -> list[AppendResult | DmaUpgradeError]:
        """One statement, committed on its own: the server function ``dma_append`` (migration 0012) takes the
        append lock, reads the head, checks each append's expected version, extends the hash chain from the parts
        prepared here, inserts the rows and sends the wake-up. The lock is held for the server's work only, never
        across a round trip to this process, so a process that hangs (or whose threads are slow to answer) holds
        up no other engine. The events of stale appends are looked up after the commit (they are immutable).

        ``attempt.may_retry`` stays set: a kept connection lost in the statement is tried once more on a fresh
        one even if the server committed, which is safe because an append is idempotent (a retry of a stored one
        finds its events by id and answers the stored result)."""
        now = self._clock.now()
        driver = cast(psycopg.Connection[Any], connection.driver_connection)
        text = _pg_literals(driver)
        streams, expected, counts, wakes = [], [], [], []
        event_ids, event_types, schema_versions, payloads, actors, correlations, causations, befores, afters = (
            [], [], [], [], [], [], [], [], [])
        for pending in group:
            streams.append(text(pending.stream_id))
            expected.append(f"{pending.expected_version:d}")
            counts.append(f"{len(pending.prepared):d}")
            wakes.append("true" if pending.stream_id.startswith(self._notify_prefixes) else "false")
            for new, event_type, schema_version, payload, (before_version, before_time), ids in pending.prepared:
                event_ids.append(_pg_uuid(ids[0]))
                correlations.append(_pg_uuid(ids[1]))
                causations.append(_pg_uuid(ids[2]))
                event_types.append(text(event_type))
                schema_versions.append(f"{schema_version:d}")
                payloads.append(text(payload))
                actors.append(text(new.metadata.actor))
                befores.append(text(before_version))
                afters.append(text(before_time))
        statement = _PG_APPEND.format(*(", ".join(values) for values in (
            streams, expected, counts, wakes, event_ids, event_types, schema_versions, payloads, actors, correlations,
            causations, befores, afters)), text(now.isoformat()), text(utc_timestamp(now)))
        driver.autocommit = True  # the statement commits on its own
        try:
            with driver.cursor() as cursor:
                decided = cursor.execute(statement, prepare=False).fetchall()  # each text is new: keep none
                return [AppendResult(positions=tuple(range(first, first + len(pending.prepared))),
                                     stream_version=actual + len(pending.prepared)) if first is not None
                        else self._stale(cursor, pending, actual)
                        for pending, (first, actual) in zip(group, decided, strict=True)]
        except BaseException:
            attempt.connection_lost = driver.closed or driver.broken
            raise
        finally:
            if not driver.closed:
                driver.autocommit = False

    def _chain_group(self, group: list[PendingAppend], streams: list[str], head: Any, cursor: Any,
                     ) -> tuple[list[AppendResult | DmaUpgradeError], list[tuple[Any, ...]]]:
        """Under SQLite's write lock, given the head row (the head's position and hash, then the version of each
        of ``streams``): check each append's expected version (after the group's earlier appends) and chain the
        rows of those that hold, in order. Each append's outcome, and the rows."""
        head_position, head_hash, *stream_versions = head
        if head_position is None:
            head_position, head_hash = 0, GENESIS_HASH
        versions = {stream_id: version or 0 for stream_id, version in zip(streams, stream_versions, strict=True)}
        now = self._clock.now()
        recorded_at = self._stored_time(now)
        stamp = utc_timestamp(now)
        uuid = self._stored_uuid
        rows: list[tuple[Any, ...]] = []
        outcomes: list[AppendResult | DmaUpgradeError] = []
        for pending in group:
            stream_id = pending.stream_id
            actual = versions[stream_id]
            if actual != pending.expected_version:
                outcomes.append(self._stale(cursor, pending, actual))
                continue
            previous_hash = head_hash
            for offset, (new, event_type, schema_version, payload, parts, (event_id, correlation_id, causation_id)) \
                    in enumerate(pending.prepared, start=1):
                previous_hash = chain_hash(previous_hash, head_position + offset, actual + offset, stamp, parts)
                rows.append((head_position + offset, uuid(event_id), stream_id, actual + offset, event_type,
                             schema_version, payload, new.metadata.actor,
                             None if correlation_id is None else uuid(correlation_id),
                             None if causation_id is None else uuid(causation_id), recorded_at, previous_hash))
            count = len(pending.prepared)
            outcomes.append(AppendResult(positions=tuple(range(head_position + 1, head_position + count + 1)),
                                         stream_version=actual + count))
            head_position, head_hash = head_position + count, previous_hash
            versions[stream_id] = actual + count
        return outcomes, rows

    def _stale(self, cursor: Any, pending: PendingAppend, actual: int) -> AppendResult | DmaUpgradeError:
        """A stale append: the original's result if it is a retry of one stored, else its error."""
        ids = [e.event_id for e in pending.events]
        if self._sqlite:
            cursor.execute(_SQLITE_STORED_IDS.format(", ".join("?" * len(ids))), [i.hex for i in ids])
            found = cursor.fetchall()
        else:
            cursor.execute(_PG_STORED_IDS, (ids,))
            found = cursor.fetchall()
        stored = {self._uuid(event_id): (stream_id, stream_version, position)
                  for event_id, stream_id, stream_version, position in found}
        try:
            return resolve_stale_append(pending.stream_id, pending.expected_version, actual, pending.events, stored)
        except DmaUpgradeError as error:
            return error

    def read_stream(self, stream_id: str, after_version: int = 0) -> list[RecordedEvent]:
        """The stream's events after ``after_version``, read as the driver gives rows (as ``read_all``): one
        statement, no transaction to begin and end around it (``_reading``)."""
        sql = _SQLITE_STREAM if self._sqlite else _PG_STREAM
        with self._reading() as execute:
            rows = execute(sql, (stream_id, after_version)).fetchall()
        uuid, time, decode, metadata = self._uuid, self._time, self._decoded, self._metadata
        return [envelope(position, uuid(event_id), stream_id, stream_version,
                         decode(event_type, schema_version, payload, position),
                         metadata(actor, correlation_id, causation_id), time(recorded_at))
                for (position, event_id, _, stream_version, event_type, schema_version, payload, actor,
                     correlation_id, causation_id, recorded_at) in rows]

    @contextmanager
    def _reading(self) -> Iterator[Callable[[str, Sequence[Any]], Any]]:
        """``execute(sql, params)`` for reads below SQLAlchemy's statement layer: on the SQLite connection, or on a
        cursor with binary results (UUIDs and times come as bytes to copy rather than text to parse) on a
        PostgreSQL connection in autocommit. Every read of the store's driver path goes through here, so they all
        fail alike: the driver's errors are raised as SQLAlchemy's (``DBAPIError`` and its kinds, naming the
        statement that failed), as a read through SQLAlchemy raises them, and a connection the error broke leaves
        the pool (``connection_invalidated``)."""
        dbapi = self._engine.dialect.loaded_dbapi
        connection: PoolProxiedConnection | None = None
        statement: tuple[str | None, Sequence[Any]] = (None, ())
        invalidated = False

        def on(target: Any) -> Callable[[str, Sequence[Any]], Any]:
            def execute(sql: str, params: Sequence[Any]) -> Any:
                nonlocal statement
                statement = (sql, params)
                return target.execute(sql, params)
            return execute

        try:
            connection = self._engine.raw_connection()  # the pool raises the driver's error when it cannot connect
            if self._sqlite:
                yield on(connection.driver_connection)
                return
            driver = cast(psycopg.Connection[Any], connection.driver_connection)
            try:
                driver.autocommit = True
                with driver.cursor(binary=True) as cursor:
                    yield on(cursor)
            finally:
                if driver.closed or driver.broken:
                    connection.invalidate()
                    invalidated = True
                else:
                    driver.autocommit = False
        except dbapi.Error as error:
            raise sa.exc.DBAPIError.instance(statement[0], statement[1], error, dbapi.Error,
                                             connection_invalidated=invalidated) from None
        finally:
            if connection is not None:
                connection.close()

    def _pages(self, columns: str, after: int, page_size: int) -> Iterator[Sequence[Any]]:
        """Driver rows (no type processing) of ``columns`` after ``after`` in global order, a page at a time."""
        fetch = partial(self._sqlite_page if self._sqlite else self._pg_page,
                        _SQLITE_PAGE.format(columns=columns) if self._sqlite
                        else _PG_PAGE.format(columns=columns), page_size=page_size)
        rows, following = fetch(after)
        while following is not None:
            if rows:
                yield rows
            rows, following = fetch(following)
        if rows:
            yield rows

    def _sqlite_page(self, sql: str, position: int, *, page_size: int) -> tuple[list[Any], int | None]:
        """The page after ``position``, and where the next one starts (None: there is no next one)."""
        with self._reading() as execute:
            rows = execute(sql, (position, page_size)).fetchall()
        return rows, rows[-1][0] if rows else None

    def _pg_page(self, sql: str, position: int, *, page_size: int) -> tuple[list[Any], int | None]:
        """``_sqlite_page`` on PostgreSQL: a page is the range of positions after ``position``, which the planner
        reads through the primary key whatever it knows of the table (``position > x ORDER BY position LIMIT n``
        on a table not yet analysed is a whole scan and a sort per page). A short page is the head, or a gap (only
        rows deleted behind the store's back leave one): the next stored position says which, and a reader walks
        on past a gap as before."""
        with self._reading() as execute:
            rows = execute(sql, (position, position + page_size)).fetchall()
            if len(rows) == page_size:
                return rows, rows[-1][0]
            following = execute(_PG_NEXT_POSITION, (rows[-1][0] if rows else position,)).fetchone()
        return rows, None if following is None else following[0] - 1

    def read_records(self, after: int = 0, page_size: int = 1000) -> Iterator[StoredRecord]:
        uuid, time, metadata = self._uuid, self._time, self._metadata
        for page in self._pages(_RECORD_COLUMNS, after, page_size):
            for (position, event_id, stream_id, stream_version, event_type, schema_version, payload, actor,
                 correlation_id, causation_id, recorded_at, digest) in page:
                yield stored_record(position, uuid(event_id), stream_id, stream_version, event_type, schema_version,
                                    payload, metadata(actor, correlation_id, causation_id), time(recorded_at), digest)

    def read_all(self, after: int = 0, page_size: int = 1000) -> Iterator[RecordedEvent]:
        uuid, time, decode, metadata = self._uuid, self._time, self._decoded, self._metadata
        for page in self._pages(_ENVELOPE_COLUMNS, after, page_size):
            for (position, event_id, stream_id, stream_version, event_type, schema_version, payload, actor,
                 correlation_id, causation_id, recorded_at) in page:
                yield envelope(position, uuid(event_id), stream_id, stream_version,
                               decode(event_type, schema_version, payload, position),
                               metadata(actor, correlation_id, causation_id), time(recorded_at))

    def read_projected(self, after: int = 0, page_size: int = 1000,
                       event_types: Collection[str] | None = None) -> Iterator[ProjectedEvent]:
        """Like ``read_all``, with only what projections read: what the projection runner replays. Given
        ``event_types`` (names), an event of another type comes with ``NOT_DECODED`` in place of its event."""
        time, decode, new = self._time, self._decoded, tuple.__new__
        for page in self._pages(_PROJECTED_COLUMNS, after, page_size):
            for position, stream_id, event_type, schema_version, payload, actor, recorded_at in page:
                event = (decode(event_type, schema_version, payload, position)
                         if event_types is None or event_type in event_types else NOT_DECODED)
                yield new(ProjectedEvent, (position, stream_id, event, actor, time(recorded_at)))

    def _decoded(self, event_type: str, schema_version: int, payload: str, position: int) -> Event:
        """The decoded event; short payloads are remembered (events are immutable, and many repeat)."""
        if len(payload) > _SHARED_PAYLOAD_CHARS:
            return self._codec.decode(event_type, schema_version, payload, position)
        key = (event_type, schema_version, payload)
        event = self._events.get(key)
        if event is None:
            event = self._codec.decode(event_type, schema_version, payload, position)
            if len(self._events) >= _SHARED_ENTRIES:
                self._events.clear()
            self._events[key] = event
        return event

    def _shared_uuid(self, text: str) -> UUID:
        uuid = self._uuids.get(text)
        if uuid is None:
            if len(self._uuids) >= _SHARED_ENTRIES:
                self._uuids.clear()
            uuid = self._uuids[text] = _uuid_from_text(text)
        return uuid

    def _metadata(self, actor: str, correlation_id: Any, causation_id: Any) -> EventMetadata:
        """The metadata of a row; shared between rows of the same actor and correlation that have no causation
        (an event caused by another is most often the only one caused by it: not worth remembering)."""
        if causation_id is not None:
            return metadata_of(actor, None if correlation_id is None else self._correlation(correlation_id),
                               self._uuid(causation_id))
        key = (actor, correlation_id)
        metadata = self._metadatas.get(key)
        if metadata is None:
            metadata = metadata_of(actor, None if correlation_id is None else self._uuid(correlation_id), None)
            if len(self._metadatas) >= _SHARED_ENTRIES:
                self._metadatas.clear()
            self._metadatas[key] = metadata
        return metadata

    def read_category(self, prefix: str) -> Iterator[RecordedEvent]:
        in_category = events.c.stream_id.startswith(prefix, autoescape=True)
        position = 0
        while True:
            query = (sa.select(*_COLUMNS).where(in_category, events.c.position > position)
                     .order_by(events.c.position).limit(1000))
            with self._engine.connect() as conn:
                rows = conn.execute(query).all()
            if not rows:
                return
            for row in rows:
                yield self._codec.decode_record(record_from_row(row))
            position = rows[-1][0]

    def head_position(self) -> int:
        with self._engine.connect() as conn:
            return conn.execute(sa.select(sa.func.max(events.c.position))).scalar() or 0

