"""Feeding projections from the event store into SQL tables, exactly once.

Each batch of events is applied to a row cache; the changed rows and the projection's checkpoint are
then written in one transaction, so a crash never applies an event twice or skips one. A handler that
raises stops its projection: the batch is rolled back and the position and error are recorded.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from adapters.sql.database import WRITE
from adapters.sql.read_models import checkpoints, from_sql, sql_table, to_sql
from engine.errors import DmaUpgradeError, NotFound
from engine.events import RecordedEvent
from engine.ports import Clock, EventStore
from projections.base import Projection
from projections.tables import Key, Row, TableSpec


class ProjectionStopped(DmaUpgradeError):
    """A projection's handler failed on an event; the projection stays at the event before it."""


class _CheckpointMoved(Exception):
    """Another runner applied events of this projection since this one read its checkpoint."""


class _HandlerFailed(Exception):
    """A handler failed; its projection's stop is recorded and the others go on."""


@dataclass(frozen=True)
class ProjectionStatus:
    """Where one projection stands."""

    name: str
    position: int
    head: int
    lag_events: int
    lag_seconds: float
    error: str | None
    error_position: int | None


class _SqlRows:
    """Row access for one batch: reads through to SQL once per key, writes at flush."""

    def __init__(self, specs: Sequence[TableSpec], *, empty: bool) -> None:
        self._conn: sa.Connection | None = None
        self._specs = {spec.name: spec for spec in specs}
        self._empty = empty
        self._cache: dict[tuple[str, Key], Row | None] = {}
        self._existed: dict[tuple[str, Key], bool] = {}
        self._dirty: set[tuple[str, Key]] = set()

    def bind(self, conn: sa.Connection) -> None:
        """Use this connection (and its transaction) for the next batch."""
        self._conn = conn

    def trim(self, max_rows: int) -> None:
        """Forget cached rows past ``max_rows`` (they are all written); later reads go to SQL."""
        if len(self._cache) > max_rows:
            self._cache.clear()
            self._existed.clear()
            self._empty = False

    def get(self, table: str, key: Key) -> Row | None:
        slot = (table, key)
        if slot not in self._cache:
            row = None if self._empty else self._load(table, key)
            self._cache[slot] = row
            self._existed[slot] = row is not None
        cached = self._cache[slot]
        return dict(cached) if cached is not None else None

    def put(self, table: str, row: Row) -> None:
        spec = self._specs[table]
        slot = (table, spec.key_of(row))
        if slot not in self._existed:
            self.get(table, slot[1])
        self._cache[slot] = {name: row.get(name) for name in spec.column_names}
        self._dirty.add(slot)

    def delete(self, table: str, key: Key) -> None:
        slot = (table, key)
        if slot not in self._existed:
            self.get(table, key)
        self._cache[slot] = None
        self._dirty.add(slot)

    def _load(self, table: str, key: Key) -> Row | None:
        spec = self._specs[table]
        sql = sql_table(spec)
        assert self._conn is not None
        found = self._conn.execute(sa.select(sql).where(
            *(sql.c[column] == value for column, value in zip(spec.key, key, strict=True)))).first()
        return from_sql(spec, found) if found is not None else None

    def flush(self) -> None:
        """Write every changed row: inserts, updates and deletes in bulk per table."""
        assert self._conn is not None
        for name, spec in self._specs.items():
            sql = sql_table(spec)
            inserts: list[dict[str, Any]] = []
            updates: list[dict[str, Any]] = []
            deletes: list[dict[str, Any]] = []
            for slot in (s for s in self._dirty if s[0] == name):
                row, existed = self._cache[slot], self._existed[slot]
                keys = {f"k_{c}": v for c, v in zip(spec.key, slot[1], strict=True)}
                if row is None:
                    if existed:
                        deletes.append(keys)
                elif existed:
                    updates.append({**to_sql(spec, row), **keys})
                else:
                    inserts.append(to_sql(spec, row))
            where = [sql.c[c] == sa.bindparam(f"k_{c}") for c in spec.key]
            if deletes:
                self._conn.execute(sql.delete().where(*where), deletes)
            if updates:
                self._conn.execute(sql.update().where(*where), updates)
            if inserts:
                self._conn.execute(sql.insert(), inserts)
        for slot in self._dirty:
            self._existed[slot] = self._cache[slot] is not None
        self._dirty.clear()


class ProjectionRunner:
    """Catches projections up with the event store, follows it, rebuilds them, reports their lag."""

    def __init__(self, engine: Engine, store: EventStore, clock: Clock, projections: Iterable[Projection],
                 *, batch_size: int = 5000, max_cached_rows: int = 50_000) -> None:
        self._engine = engine
        self._store = store
        self._clock = clock
        self.projections = {p.name: p for p in projections}
        self._batch_size = batch_size
        self.max_cached_rows = max_cached_rows

    def projection(self, name: str) -> Projection:
        if name not in self.projections:
            raise NotFound(f"unknown projection {name!r}; known: {', '.join(self.projections)}")
        return self.projections[name]

    def catch_up(self, names: Iterable[str] | None = None) -> dict[str, int]:
        """Apply every event after each projection's checkpoint; return how many each applied.

        Projections at the same checkpoint share one read of the log and one transaction per batch.
        A projection whose handler fails is stopped at that position; the others still catch up, then
        ``ProjectionStopped`` names every stopped projection.
        """
        chosen = [self.projection(name) for name in (names or self.projections)]
        applied = {p.name: 0 for p in chosen}
        while True:
            groups: dict[int, list[Projection]] = {}
            for projection in chosen:
                position, error = self._checkpoint(projection.name)
                if error is None:
                    groups.setdefault(position, []).append(projection)
            try:
                for position, group in sorted(groups.items()):
                    count = self._catch_up_group(group, position)
                    for projection in group:
                        applied[projection.name] += count
                break
            except (_CheckpointMoved, _HandlerFailed):
                continue
        stops = [f"projection {p.name} is stopped at position {error[0]}: {error[1]} (fix the cause, then "
                 f"`dma-upgrade projections rebuild {p.name}`)"
                 for p in chosen if (error := self._checkpoint(p.name)[1]) is not None]
        if stops:
            raise ProjectionStopped("; ".join(stops))
        return applied

    def rebuild(self, names: Iterable[str] | None = None) -> dict[str, int]:
        """Empty the projections' tables and replay the whole store from position 0."""
        chosen = [self.projection(name) for name in (names or self.projections)]
        for projection in chosen:
            with self._engine.connect() as conn:
                conn.execution_options(**{WRITE: True})
                with conn.begin():
                    for spec in projection.tables:
                        conn.execute(sql_table(spec).delete())
                    conn.execute(checkpoints.delete().where(checkpoints.c.name == projection.name))
        return self.catch_up([p.name for p in chosen])

    def status(self) -> list[ProjectionStatus]:
        """Checkpoint, lag (events and seconds behind the head) and any stop of every projection."""
        head = self._store.head_position()
        with self._engine.connect() as conn:
            rows = {r.name: r for r in conn.execute(sa.select(checkpoints))}
        statuses = []
        for name in self.projections:
            row = rows.get(name)
            position = row.position if row else 0
            statuses.append(ProjectionStatus(
                name=name, position=position, head=head, lag_events=head - position,
                lag_seconds=self._lag_seconds(position, head), error=row.error if row else None,
                error_position=row.error_position if row else None))
        return statuses

    def _lag_seconds(self, position: int, head: int) -> float:
        if position >= head:
            return 0.0
        first_pending = next(self._store.read_records(after=position, page_size=1), None)
        if first_pending is None:
            return 0.0
        return max((self._clock.now() - first_pending.recorded_at).total_seconds(), 0.0)

    def _catch_up_group(self, group: list[Projection], position: int) -> int:
        """Feed projections that stand at the same checkpoint from one read of the log."""
        rows = {p.name: _SqlRows(p.tables, empty=position == 0 and self._tables_empty(p)) for p in group}
        applied = 0
        batch: list[RecordedEvent] = []
        for recorded in self._store.read_all(after=position, page_size=self._batch_size):
            batch.append(recorded)
            if len(batch) >= self._batch_size:
                applied += self._apply_batch(group, batch, rows)
                batch = []
        if batch:
            applied += self._apply_batch(group, batch, rows)
        return applied

    def _apply_batch(self, group: list[Projection], batch: list[RecordedEvent], rows: dict[str, _SqlRows]) -> int:
        """Apply a batch to every projection of the group; write their rows and checkpoints in one transaction."""
        failed: tuple[str, int, str] | None = None
        with self._engine.connect() as conn:
            conn.execution_options(**{WRITE: True})
            with conn.begin() as transaction:
                for name in sorted(rows):  # lock checkpoints in one order: concurrent runners never deadlock
                    if self._locked_position(conn, name) != batch[0].position - 1:
                        transaction.rollback()
                        raise _CheckpointMoved
                for projection_rows in rows.values():
                    projection_rows.bind(conn)
                failed = self._handle_all(group, batch, rows)
                if failed is None:
                    for projection in group:
                        rows[projection.name].flush()
                        self._save_checkpoint(conn, projection.name, batch[-1].position, None)
                else:
                    transaction.rollback()
        if failed is not None:
            name, position, error = failed
            self._record_stop(name, batch[0].position - 1, (position, error))
            raise _HandlerFailed
        for projection_rows in rows.values():
            projection_rows.trim(self.max_cached_rows)
        return len(batch)

    @staticmethod
    def _handle_all(group: list[Projection], batch: list[RecordedEvent],
                    rows: dict[str, _SqlRows]) -> tuple[str, int, str] | None:
        for recorded in batch:
            for projection in group:
                try:
                    projection.handle(recorded, rows[projection.name])
                except Exception as exc:
                    return projection.name, recorded.position, f"{type(exc).__name__}: {exc}"
        return None

    def _locked_position(self, conn: sa.Connection, name: str) -> int:
        """The checkpoint, locked until the transaction ends (another runner may have moved it)."""
        query = sa.select(checkpoints.c.position).where(checkpoints.c.name == name).with_for_update()
        position = conn.execute(query).scalar()
        if position is None:
            try:
                with conn.begin_nested():
                    conn.execute(checkpoints.insert().values(name=name, position=0, updated_at=self._clock.now()))
            except sa.exc.IntegrityError:  # another runner created it first
                return int(conn.execute(query).scalar_one())
            return 0
        return int(position)

    def _tables_empty(self, projection: Projection) -> bool:
        with self._engine.connect() as conn:
            return all(conn.execute(sa.select(sa.literal(1)).select_from(sql_table(spec)).limit(1)).first() is None
                       for spec in projection.tables)

    def _checkpoint(self, name: str) -> tuple[int, tuple[int, str] | None]:
        with self._engine.connect() as conn:
            row = conn.execute(sa.select(checkpoints).where(checkpoints.c.name == name)).first()
        if row is None:
            return 0, None
        return row.position, (row.error_position, row.error) if row.error else None

    def _record_stop(self, name: str, position: int, failure: tuple[int, str]) -> None:
        with self._engine.connect() as conn:
            conn.execution_options(**{WRITE: True})
            with conn.begin():
                self._save_checkpoint(conn, name, position, failure)

    def _save_checkpoint(self, conn: sa.Connection, name: str, position: int,
                         failure: tuple[int, str] | None) -> None:
        values = {"position": position, "updated_at": self._clock.now(),
                  "error": failure[1] if failure else None, "error_position": failure[0] if failure else None}
        updated = conn.execute(checkpoints.update().where(checkpoints.c.name == name).values(**values))
        if updated.rowcount == 0:
            conn.execute(checkpoints.insert().values(name=name, **values))


def read_rows(engine: Engine, spec: TableSpec, **where: Any) -> list[Row]:
    """Rows of a read-model table, filtered by equality on columns, in key order."""
    sql = sql_table(spec)
    query = sa.select(sql).where(*(sql.c[c] == v for c, v in where.items())).order_by(*(sql.c[c] for c in spec.key))
    with engine.connect() as conn:
        return [from_sql(spec, row) for row in conn.execute(query)]



