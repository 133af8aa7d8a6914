"""``SqlEventStore``: the event store port on SQLAlchemy 2 Core, for SQLite and PostgreSQL.

Appends are serialised so that global order equals commit order: SQLite has a single writer
(``BEGIN IMMEDIATE``), PostgreSQL takes a transaction-scoped advisory lock before reading the head.
Positions are assigned under that lock, so they have no gaps and a tailing reader never skips one.
Inside a process, appends arriving while another is written are written together in the next
transaction (``group_commit``): one writer at a time, threads queue on it rather than on SQLite's busy
timeout, and a commit's wait for the disk is shared by every append of its group.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple
from uuid import UUID, SafeUUID

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from adapters.sql.database import WRITE, describe, is_sqlite
from adapters.sql.group_commit import GroupCommit, PendingAppend
from adapters.sql.schema import events
from adapters.sql.wakeups import notify
from engine.codec import EventCodec
from engine.errors import DmaUpgradeError, StoreUnavailable
from engine.event_log import build_records, duplicate_ids, encode_events, resolve_stale_append
from engine.events import Event, EventMetadata, NewEvent, RecordedEvent, StoredRecord
from engine.hashchain import GENESIS_HASH
from engine.ports import AppendResult, Clock

APPEND_LOCK_KEY = 0x444D4155  # "DMAU": the PostgreSQL advisory lock that serialises appends
_APPEND_IDLE_LIMIT_MS = "5000"
"""An append's transaction that waits this long for its process (hung, stopped, cut off) is ended by the
server, which frees the append lock for every other engine; the hung process's append then fails as if the
database were unreachable, and nothing of it is stored."""

_COLUMNS = (events.c.position, events.c.event_id, events.c.stream_id, events.c.stream_version,
            events.c.event_type, events.c.schema_version, events.c.payload, events.c.actor,
            events.c.correlation_id, events.c.causation_id, events.c.recorded_at, events.c.hash)
_HEAD_AND_STREAM_VERSION = (
    "SELECT (SELECT max(stream_version) FROM events WHERE stream_id = {stream_id}), "
    "(SELECT position FROM events ORDER BY position DESC LIMIT 1), "
    "(SELECT hash FROM events ORDER BY position DESC LIMIT 1)")
"""One round trip on the append path, sent as plain SQL: the stream's version and the head's position and hash."""
_GROUP_HEAD = sa.text(
    "SELECT stream_id, max(stream_version), NULL FROM events WHERE stream_id IN :streams GROUP BY stream_id "
    "UNION ALL SELECT NULL, position, hash FROM (SELECT position, hash FROM events ORDER BY position DESC LIMIT 1) "
    "AS head").bindparams(sa.bindparam("streams", expanding=True))
"""The same in one round trip for a group of appends: each stream's version, and a row without a stream
for the head's position and hash."""
_ENVELOPE_COLUMNS = ("position, event_id, stream_id, stream_version, event_type, schema_version, payload, actor, "
                     "correlation_id, causation_id, recorded_at")
_RECORD_COLUMNS = f"{_ENVELOPE_COLUMNS}, hash"
_PROJECTED_COLUMNS = "position, stream_id, event_type, schema_version, payload, actor, recorded_at"
_PAGE = "SELECT {{columns}} FROM events WHERE position > {after} ORDER BY position LIMIT {limit}"
"""A page of the log, sent as plain SQL: rows come back as the driver gives them, converted below per dialect."""
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
    _set(uuid, "is_safe", SafeUUID.unknown)
    return uuid


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
    """PostgreSQL's driver already gives UUIDs and timezone-aware datetimes."""
    return value


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
        qmark = engine.dialect.paramstyle == "qmark"
        self._head_sql = _HEAD_AND_STREAM_VERSION.format(stream_id="?" if qmark else "%(stream_id)s")
        self._head_params: Callable[[str], Any] = (lambda s: (s,)) if qmark else (lambda s: {"stream_id": s})
        self._group_commit = GroupCommit(self._write_group)
        self._page_sql = _PAGE.format(after="?", limit="?") if qmark else _PAGE.format(after="%(after)s",
                                                                                        limit="%(limit)s")
        self._page_params: Callable[[int, int], Any] = (
            (lambda after, limit: (after, limit)) if qmark else (lambda after, limit: {"after": after, "limit": limit}))
        self._uuid: Callable[[Any], UUID] = _uuid_from_text if self._sqlite else _as_given
        self._time: Callable[[Any], datetime] = _utc_from_text if self._sqlite else _as_given
        self._events: dict[tuple[str, int, str], Event] = {}
        self._metadatas: dict[tuple[str, Any, Any], EventMetadata] = {}

    @property
    def engine(self) -> Engine:
        return self._engine

    def append(self, stream_id: str, expected_version: int, events_: Sequence[NewEvent]) -> AppendResult:
        if not events_:
            return AppendResult(positions=(), stream_version=expected_version)
        return self._group_commit.append(PendingAppend(stream_id, expected_version, events_,
                                                       encode_events(self._codec, events_)))

    def _write_group(self, group: list[PendingAppend]) -> None:
        """Write a group of appends in one transaction; if the database refuses it, each on its own."""
        try:
            with self._engine.connect() as conn:
                conn.execution_options(**{WRITE: True})
                with conn.begin():
                    outcomes = self._append_locked(conn, group)
        except (sa.exc.IntegrityError, sa.exc.OperationalError, sa.exc.InternalError) as error:
            # InternalError: the server ended a transaction left idle too long (_APPEND_IDLE_LIMIT_MS)
            if len(group) > 1:
                for pending in group:
                    self._write_group([pending])
                return
            pending = group[0]
            pending.error = duplicate_ids(pending.stream_id, [e.event_id for e in pending.events]) \
                if isinstance(error, sa.exc.IntegrityError) \
                else StoreUnavailable(f"cannot append to {describe(self._engine)}: {error.orig}")
            return
        for pending, outcome in zip(group, outcomes, strict=True):
            if isinstance(outcome, AppendResult):
                pending.result = outcome
            else:
                pending.error = outcome

    def _append_locked(self, conn: sa.Connection, group: list[PendingAppend]) -> list[AppendResult | DmaUpgradeError]:
        """Under the append lock: check each append's expected version (after the group's earlier appends),
        insert the rows of those that hold, hash-chained in order; return each one's outcome."""
        if not self._sqlite:
            conn.execute(sa.select(
                sa.func.set_config("idle_in_transaction_session_timeout", _APPEND_IDLE_LIMIT_MS, True),
                sa.func.pg_advisory_xact_lock(APPEND_LOCK_KEY)))
        if len(group) == 1:
            version, head_position, head_hash = conn.exec_driver_sql(
                self._head_sql, self._head_params(group[0].stream_id)).one()
            versions = {group[0].stream_id: version or 0}
        else:
            versions, head_position, head_hash = {}, None, None
            for stream_id, number, digest in conn.execute(_GROUP_HEAD, {"streams": list({p.stream_id for p in group})}):
                if stream_id is None:
                    head_position, head_hash = number, digest
                else:
                    versions[stream_id] = number
        head_position, head_hash = head_position or 0, head_hash or GENESIS_HASH
        recorded_at = self._clock.now()
        rows: list[dict[str, Any]] = []
        outcomes: list[AppendResult | DmaUpgradeError] = []
        wake = False
        for pending in group:
            actual = versions.get(pending.stream_id) or 0
            if actual != pending.expected_version:
                outcomes.append(self._stale(conn, pending, actual))
                continue
            records = build_records(self._codec, pending.events, stream_id=pending.stream_id, stream_version=actual,
                                    head_position=head_position, head_hash=head_hash, recorded_at=recorded_at,
                                    encoded=pending.encoded)
            rows.extend(_row(r) for r in records)
            head_position, head_hash = records[-1].position, records[-1].hash
            versions[pending.stream_id] = actual + len(records)
            outcomes.append(AppendResult(positions=tuple(r.position for r in records),
                                         stream_version=actual + len(records)))
            wake = wake or pending.stream_id.startswith(self._notify_prefixes)
        if rows:
            conn.execute(events.insert(), rows)
        if wake:
            notify(conn)
        return outcomes

    @staticmethod
    def _stale(conn: sa.Connection, pending: PendingAppend, actual: int) -> AppendResult | DmaUpgradeError:
        """A stale append: the original's result if it is a retry of one stored, else its error."""
        ids = [e.event_id for e in pending.events]
        stored = {row.event_id: (row.stream_id, row.stream_version, row.position) for row in conn.execute(
            sa.select(events.c.event_id, events.c.stream_id, events.c.stream_version, events.c.position)
            .where(events.c.event_id.in_(ids)))}
        try:
            return resolve_stale_append(pending.stream_id, pending.expected_version, actual, pending.events, stored)
        except DmaUpgradeError as error:
            return error

    def read_stream(self, stream_id: str, after_version: int = 0) -> list[RecordedEvent]:
        query = (sa.select(*_COLUMNS).where(events.c.stream_id == stream_id, events.c.stream_version > after_version)
                 .order_by(events.c.stream_version))
        with self._engine.connect() as conn:
            rows = conn.execute(query).all()
        return [self._codec.decode_record(record_from_row(row)) for row in rows]

    def _pages(self, columns: str, after: int, page_size: int) -> Iterator[Sequence[Any]]:
        """Driver rows (no type processing) of ``columns`` after ``after`` in global order, a page per short read."""
        sql = self._page_sql.format(columns=columns)
        position = after
        while True:
            with self._engine.connect() as conn:
                cursor = conn.connection.cursor()
                try:
                    cursor.execute(sql, self._page_params(position, page_size))
                    rows = cursor.fetchall()
                finally:
                    cursor.close()
            if not rows:
                return
            yield rows
            position = rows[-1][0]

    def read_records(self, after: int = 0, page_size: int = 1000) -> Iterator[StoredRecord]:
        uuid, time = self._uuid, self._time
        construct = StoredRecord.model_construct
        for page in self._pages(_RECORD_COLUMNS, after, page_size):
            for (position, event_id, stream_id, stream_version, event_type, schema_version, payload, actor,
                 correlation_id, causation_id, recorded_at, digest) in page:
                yield construct(position=position, event_id=uuid(event_id), stream_id=stream_id,
                                stream_version=stream_version, event_type=event_type, schema_version=schema_version,
                                payload=payload, metadata=self._metadata(actor, correlation_id, causation_id),
                                recorded_at=time(recorded_at), hash=digest)

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

    def _metadata(self, actor: str, correlation_id: Any, causation_id: Any) -> EventMetadata:
        """The metadata of a row, shared between rows that carry the same."""
        key = (actor, correlation_id, causation_id)
        metadata = self._metadatas.get(key)
        if metadata is None:
            uuid = self._uuid
            metadata = EventMetadata.model_construct(
                actor=actor, correlation_id=None if correlation_id is None else uuid(correlation_id),
                causation_id=None if causation_id is None else uuid(causation_id))
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


def _row(record: StoredRecord) -> dict[str, Any]:
    return {
        "position": record.position, "event_id": record.event_id, "stream_id": record.stream_id,
        "stream_version": record.stream_version, "event_type": record.event_type,
        "schema_version": record.schema_version, "payload": record.payload,
        "actor": record.metadata.actor, "correlation_id": record.metadata.correlation_id,
        "causation_id": record.metadata.causation_id, "recorded_at": record.recorded_at,
        "hash": record.hash,
    }
