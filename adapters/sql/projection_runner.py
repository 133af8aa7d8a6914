"""Feeding projections from the event store into SQL tables, exactly once.

Each batch of events is folded into a row cache (``SqlRows``), each event given only to the projections
that take its type; the changed rows and the projections' checkpoints are then written in one transaction,
after checking that no other runner moved the checkpoints meanwhile, so a crash never applies an event
twice or skips one. A handler that raises stops its projection: nothing of the batch is written and the
position and error are recorded.
"""

from __future__ import annotations

import gc
import multiprocessing
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import islice
from multiprocessing.connection import Connection
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from dma_upgrade.adapters.errors import ProjectionStopped
from dma_upgrade.adapters.progress_report import LogWalk, Reporter
from dma_upgrade.adapters.sql.database import WRITE
from dma_upgrade.adapters.sql.event_store import ProjectedEvent, SqlEventStore
from dma_upgrade.adapters.sql.read_models import checkpoints, from_sql, sql_table
from dma_upgrade.adapters.sql.row_cache import SqlRows
from dma_upgrade.engine.errors import DmaUpgradeError, NotFound
from dma_upgrade.engine.events import Event
from dma_upgrade.engine.ports import Clock
from dma_upgrade.projections.base import Projection
from dma_upgrade.projections.tables import Row, TableSpec

PAGE_SIZE = 5000
"""Events per read of the log (a batch may span several pages)."""

REPORT_SECONDS = 0.25
"""How often a rebuild in several processes reports the children's progress while it waits for them."""

FOLD_GC_THRESHOLD = 50_000
"""Allocations between two cycle collections while events are folded (Python's default is 700)."""

Routes = dict[type[Event], list[tuple[Projection, SqlRows]]]
"""For each event type, the projections (with their rows) that take it."""


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


class _Transaction:
    """A batch's write transaction, begun only when the batch first needs the database; rolled back unless
    committed."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._conn: sa.Connection | None = None

    def connection(self) -> sa.Connection:
        if self._conn is None:
            conn = self._engine.connect()
            conn.execution_options(**{WRITE: True})
            conn.begin()
            self._conn = conn
        return self._conn

    def commit(self) -> None:
        assert self._conn is not None
        self._conn.commit()

    def __enter__(self) -> _Transaction:
        return self

    def __exit__(self, *_: object) -> None:
        if self._conn is not None:
            self._conn.close()  # rolls back what was not committed


class ProjectionRunner:
    """Catches projections up with the event store, follows it, rebuilds them, reports their lag."""

    def __init__(self, engine: Engine, store: SqlEventStore, clock: Clock, projections: Iterable[Projection],
                 *, batch_size: int = 20_000, max_cached_rows: int = 20_000) -> None:
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

    def catch_up(self, names: Iterable[str] | None = None,
                 reached: Callable[[int], None] | None = None) -> dict[str, int]:
        """Apply every event after each projection's checkpoint; return how many each applied (``reached`` is told
        the position folded up to after each batch).

        Projections at the same checkpoint share one read of the log and one transaction per batch.
        A projection whose handler fails is stopped at that position; the others still catch up, then
        ``ProjectionStopped`` names every stopped projection.
        """
        chosen = [self.projection(name) for name in (names or self.projections)]
        applied = {p.name: 0 for p in chosen}
        while True:
            groups: dict[int, list[Projection]] = {}
            standing = self._checkpoints([p.name for p in chosen])
            for projection in chosen:
                position, error = standing[projection.name]
                if error is None:
                    groups.setdefault(position, []).append(projection)
            try:
                for position, group in sorted(groups.items()):
                    count = self._catch_up_group(group, position, reached)
                    for projection in group:
                        applied[projection.name] += count
                break
            except (_CheckpointMoved, _HandlerFailed):
                continue
        standing = self._checkpoints([p.name for p in chosen])
        stops = [f"projection {p.name} is stopped at position {error[0]}: {error[1]} (fix the cause, then "
                 f"`dma-upgrade projections rebuild {p.name}`)"
                 for p in chosen if (error := standing[p.name][1]) is not None]
        if stops:
            raise ProjectionStopped("; ".join(stops))
        return applied

    def rebuild(self, names: Iterable[str] | None = None, *, workers: int = 1,
                reporter: Reporter | None = None) -> dict[str, int]:
        """Empty the projections' tables and replay the whole store from position 0, telling ``reporter`` the
        positions of the log every projection has replayed (of the head's when it began).

        With ``workers`` > 1 the projections are shared out between up to that many processes, this one and
        children forked from it (so call it so only from a process with no other thread); each projection is
        still caught up by one runner, its rows and checkpoint written in one transaction per batch.
        """
        chosen = [self.projection(name) for name in (names or self.projections)]
        for projection in chosen:
            with self._engine.connect() as conn:
                conn.execution_options(**{WRITE: True})
                with conn.begin():
                    for spec in projection.tables:
                        conn.execute(sql_table(spec).delete())
                    conn.execute(checkpoints.delete().where(checkpoints.c.name == projection.name))
        walk = LogWalk(reporter, self._store.head_position())
        parts = self._share_out(chosen, workers)
        if len(parts) == 1:
            applied = self.catch_up([p.name for p in chosen], walk.reach)
        else:
            applied = self._catch_up_in_processes([[p.name for p in part] for part in parts], walk)
        walk.reach(walk.end)
        return applied

    def _share_out(self, chosen: list[Projection], workers: int) -> list[list[Projection]]:
        """The projections shared out between processes: those taking the most event types (the most work) each
        in a process of its own, the rest together in the last. One process where forking is not available or
        the database lives in this process's memory."""
        url = self._engine.url
        if (workers < 2 or len(chosen) < 2 or "fork" not in multiprocessing.get_all_start_methods()
                or (url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:"))):
            return [chosen]
        heaviest = sorted(chosen, key=lambda p: len(p.event_types), reverse=True)
        alone = min(workers, len(chosen)) - 1
        return [[p] for p in heaviest[:alone]] + [heaviest[alone:]]

    def _catch_up_in_processes(self, parts: list[list[str]], walk: LogWalk) -> dict[str, int]:
        """Catch the first part up here and each other part in a forked child, at the same time; ``walk`` reaches
        the position every part has (a part that ended has all)."""
        context = multiprocessing.get_context("fork")
        self._engine.dispose()  # no connection open across the fork (SQLite forbids using one in a child)
        reached = [context.Value("q", 0, lock=False) for _ in parts]

        def here(position: int) -> None:
            reached[0].value = position
            walk.reach(min(value.value for value in reached))

        children = []
        for part, child_reached in zip(parts[1:], reached[1:], strict=True):
            receiver, sender = context.Pipe(duplex=False)
            child = context.Process(target=self._catch_up_child, args=(part, sender, child_reached, walk.end),
                                    name=f"rebuild {', '.join(part)}")
            child.start()
            sender.close()
            children.append((child, receiver, part))
        applied: dict[str, int] = {}
        stops: list[str] = []
        failures: list[str] = []
        try:
            applied.update(self.catch_up(parts[0], here))
        except ProjectionStopped as exc:
            stops.append(str(exc))
        finally:
            here(walk.end)  # this process is done; while it waits for its children, their progress is reported
            for child, receiver, part in children:
                while not receiver.poll(REPORT_SECONDS):
                    here(walk.end)
                try:
                    outcome, value = receiver.recv()
                except EOFError:
                    outcome, value = "failed", f"the process rebuilding {', '.join(part)} ended without a result"
                child.join()
                if outcome == "applied":
                    applied.update(value)
                else:
                    (stops if outcome == "stopped" else failures).append(value)
        if failures:
            raise DmaUpgradeError("; ".join(failures))
        if stops:
            raise ProjectionStopped("; ".join(stops))
        return {name: applied[name] for part in parts for name in part}

    def _catch_up_child(self, names: list[str], sender: Connection, reached: Any, end: int) -> None:
        """In a forked child: catch ``names`` up, keeping ``reached`` (shared with the parent) at the position folded
        up to (``end`` once done), and send back what was applied, or why not."""
        self._engine.dispose(close=False)  # any connection pooled since is the parent's: this process opens its own

        def here(position: int) -> None:
            reached.value = position

        result: tuple[str, Any]
        try:
            result = ("applied", self.catch_up(names, here))
            here(end)
        except ProjectionStopped as exc:
            result = ("stopped", str(exc))
        except Exception as exc:  # reported by the parent, which waits for every child
            result = ("failed", f"rebuilding {', '.join(names)}: {type(exc).__name__}: {exc}")
        sender.send(result)
        sender.close()

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

    def _catch_up_group(self, group: list[Projection], position: int, reached: Callable[[int], None] | None) -> int:
        """Feed projections that stand at the same checkpoint from one read of the log (telling ``reached``)."""
        dialect = self._engine.dialect
        rows = {p.name: SqlRows(p.tables, dialect, empty=position == 0 and self._tables_empty(p),
                                max_rows=self.max_cached_rows) for p in group}
        routes: Routes = {}
        for projection in group:
            for event_type in projection.event_types:
                routes.setdefault(event_type, []).append((projection, rows[projection.name]))
        events = iter(self._store.read_projected(after=position, page_size=min(self._batch_size, PAGE_SIZE),
                                                 event_types=frozenset(t.event_type for t in routes)))
        applied = 0
        with _fewer_collections():
            while True:
                count, position = self._apply_batch(group, islice(events, self._batch_size), position, rows, routes)
                if count == 0:
                    return applied
                applied += count
                if reached is not None:
                    reached(position)

    def _apply_batch(self, group: list[Projection], batch: Iterator[ProjectedEvent], position: int,
                     rows: dict[str, SqlRows], routes: Routes) -> tuple[int, int]:
        """Fold a batch into every projection of the group, then write their rows and checkpoints in one
        transaction; return how many events it had and the position of the last."""
        with _Transaction(self._engine) as transaction:
            for projection_rows in rows.values():
                projection_rows.read_with(transaction.connection)
            try:
                count, last, failure = self._fold(batch, position, routes)
            finally:
                for projection_rows in rows.values():
                    projection_rows.read_with(None)
            if failure is None and count:
                conn = transaction.connection()
                for name in sorted(rows):  # lock checkpoints in one order: concurrent runners never deadlock
                    if self._locked_position(conn, name) != position:
                        raise _CheckpointMoved
                for projection in group:
                    rows[projection.name].flush(conn)
                    self._save_checkpoint(conn, projection.name, last, None)
                transaction.commit()
        if failure is not None:
            name, error_position, error = failure
            self._record_stop(name, position, (error_position, error))
            raise _HandlerFailed
        for projection_rows in rows.values():
            projection_rows.flushed()
        return count, last

    @staticmethod
    def _fold(batch: Iterator[ProjectedEvent], position: int,
              routes: Routes) -> tuple[int, int, tuple[str, int, str] | None]:
        """Give each event to the projections that take its type; stop at the first handler that fails."""
        count, last = 0, position
        for recorded in batch:
            for projection, projection_rows in routes.get(type(recorded.event), ()):
                try:
                    projection.handle(recorded, projection_rows)
                except Exception as exc:
                    return count, last, (projection.name, recorded.position, f"{type(exc).__name__}: {exc}")
            count += 1
            last = recorded.position
        return count, last, None

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

    def _checkpoints(self, names: list[str]) -> dict[str, tuple[int, tuple[int, str] | None]]:
        """Each projection's checkpoint and stop (position and error), read at once."""
        with self._engine.connect() as conn:
            rows = {row.name: row for row in conn.execute(sa.select(checkpoints).where(checkpoints.c.name.in_(names)))}
        return {name: (0, None) if (row := rows.get(name)) is None else
                (row.position, (row.error_position, row.error) if row.error else None) for name in names}

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


@contextmanager
def _fewer_collections() -> Iterator[None]:
    """Collect cycles less often while folding: a fold allocates millions of short-lived objects while it keeps
    thousands of rows cached, and each collection of the oldest generation walks all of them again."""
    thresholds = gc.get_threshold()
    gc.set_threshold(max(thresholds[0], FOLD_GC_THRESHOLD), *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)


def read_rows(engine: Engine, spec: TableSpec, **where: Any) -> list[Row]:
    """Rows of a read-model table, filtered by equality on columns (a tuple, list or set: any of its values), in
    key order."""
    sql = sql_table(spec)
    query = sa.select(sql).where(*(sql.c[c].in_(v) if isinstance(v, tuple | list | set | frozenset) else sql.c[c] == v
                                   for c, v in where.items())).order_by(*(sql.c[c] for c in spec.key))
    with engine.connect() as conn:
        return [from_sql(spec, row) for row in conn.execute(query)]



