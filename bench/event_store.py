"""Benchmark of ``SqlEventStore`` against raw SQLAlchemy Core and the ``eventsourcing`` library.

Each backend (SQLite in a temporary directory, PostgreSQL when ``--postgres-url`` is given) gets:

- appends of N upgrade streams of 8 events at one transaction per stream, and of the first
  ``--per-event-streams`` of them at one transaction per event, through ``SqlEventStore.append``,
  through raw Core inserts of the same pre-serialised rows into the same table (no hashing,
  validation or head lookups), and through an ``eventsourcing`` application, each into a database
  of its own;
- a read of every event in global order, in pages of the same size, by each of the three;
- an audit export of every event as JSON lines (``adapters.audit.export``), against a raw scan that selects
  the same rows with Core and writes the same bytes with the standard library (checked identical);
- the peak RSS of a separate process that only iterates ``SqlEventStore.read_all`` over
  ``--read-events`` events (bulk inserted once into SQLite, hash chain included, and copied to
  PostgreSQL).

The three runs of each measurement advance in turn, a step each (a twentieth of the appends, a page
of the reads), so that a change in the machine's load during the benchmark hits them alike.

    python bench/event_store.py [--streams 20000] [--per-event-streams 500] [--postgres-url URL]
                                [--read-events 1000000]
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, closing, contextmanager, nullcontext
from dataclasses import dataclass, field
from functools import partial
from itertools import islice
from pathlib import Path
from typing import Any, Protocol, TypeVar, cast
from uuid import UUID

if __package__ in (None, ""):  # run as a script: make the project root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg
import sqlalchemy as sa
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, DomainEventProtocol, event
from sqlalchemy.engine import Engine, make_url

from bench._common import Measurement, measure, peak_rss_mib, print_table, progress, ratio, vm_hwm_mib
from dma_upgrade.adapters.audit.export import ExportFormat, ExportSummary, Selection, export_lines, select_records
from dma_upgrade.adapters.clock import SystemClock, UuidFactory
from dma_upgrade.adapters.sql.database import create_db_engine, migrate, normalise_url
from dma_upgrade.adapters.sql.event_store import SqlEventStore
from dma_upgrade.adapters.sql.schema import events as events_table
from dma_upgrade.engine.agent_upgrade import AgentUpgrade, upgrade_stream_id
from dma_upgrade.engine.catalog import default_codec
from dma_upgrade.engine.codec import EventCodec
from dma_upgrade.engine.event_log import build_records
from dma_upgrade.engine.events import Event, EventMetadata, NewEvent, StoredRecord
from dma_upgrade.engine.hashchain import GENESIS_HASH, utc_timestamp, verify_chain
from dma_upgrade.engine.upgrade_events import (
    AgentUpgradeCompleted,
    AgentUpgradePlan,
    AgentUpgradeScheduled,
    InstallPhaseReported,
    Step,
    StepStarted,
    StepSucceeded,
    UpgradeOptions,
)
from dma_upgrade.engine.upgrade_machine import UpgradeState

PROJECT_ROOT = Path(__file__).resolve().parents[1]
EVENTS_PER_STREAM = 8
PAGE_SIZE = 1000
AGENTS_PER_ROLLOUT = 100
STEPS = 20
"""Each measured run is cut into this many steps, interleaved with the same steps of the other runs."""
ROWS_PER_BULK_INSERT = 8000
APPEND_TARGET = 0.8
"""Of raw Core's rate; and ``ES_TARGET`` of eventsourcing's, for the appends and the read alike (issue 17)."""
READ_TARGET = 0.7
EXPORT_TARGET = 0.6
ES_TARGET = 1.2
RSS_TARGET_MIB = 200.0

TARGET_VERSION = "10.5.2.0-15000"
PACKAGE_SHA256 = hashlib.sha256(f"DataMiner {TARGET_VERSION} upgrade package".encode()).hexdigest()
INSTALL_PHASES = ("Stopping DataMiner", "Installing files")
PLAN = AgentUpgradePlan(options=UpgradeOptions(stop_snmp=False, auto_start=False))
"""Upload then install, two install phases, a manual start: 8 events from scheduled to completed."""

NOTES = """Notes:
- SqlEventStore and raw Core share create_db_engine(): SQLite in WAL mode with synchronous=NORMAL (no
  flush per commit), PostgreSQL pinging a pooled connection only after it sat idle 0.5 s. eventsourcing's
  SQLite connections keep SQLite's default synchronous=FULL (a flush per commit); on PostgreSQL all three
  commit with the server's synchronous_commit.
- Every reader and exporter opens its connection before its clock starts.
- Raw Core inserts rows serialised and hash-chained beforehand into the same migrated events table.
- eventsourcing records the same payloads (model_dump of each event) as aggregate events; its read
  decodes every notification into a domain event, as read_all decodes every row."""

SYSTEMS = ("store", "raw", "eventsourcing")
GRANULARITIES = {"event": "1 txn/event", "stream": "1 txn/stream"}
SYSTEM_LABELS = {"store": "SqlEventStore", "raw": "raw Core", "eventsourcing": "eventsourcing"}

Stream = tuple[str, list[NewEvent]]
T = TypeVar("T")


# -- the workload ------------------------------------------------------------------------------


def upgrade_history(upgrade_id: UUID, rollout_id: UUID, agent: str) -> list[Event]:
    """The 8 events of one agent upgrade that went through without a hitch."""

    def key(step: Step) -> str:
        return f"{upgrade_id}:{step.value}:1"

    return [
        AgentUpgradeScheduled(upgrade_id=upgrade_id, rollout_id=rollout_id, agent=agent,
                              package_sha256=PACKAGE_SHA256, target_version=TARGET_VERSION, plan=PLAN),
        StepStarted(step=Step.UPLOAD, attempt=1, idempotency_key=key(Step.UPLOAD)),
        StepSucceeded(step=Step.UPLOAD, attempt=1),
        StepStarted(step=Step.INSTALL, attempt=1, idempotency_key=key(Step.INSTALL)),
        *(InstallPhaseReported(phase=phase, phase_index=index, phase_count=len(INSTALL_PHASES))
          for index, phase in enumerate(INSTALL_PHASES)),
        StepSucceeded(step=Step.INSTALL, attempt=1, version_after=TARGET_VERSION),
        AgentUpgradeCompleted(version_after=TARGET_VERSION, manual_start_needed=True),
    ]


def upgrade_stream(ids: UuidFactory, rollout_id: UUID, index: int) -> Stream:
    """One upgrade stream: its id and its events, each caused by the one before."""
    upgrade_id = ids.new_id()
    new_events = []
    previous: UUID | None = None
    for domain_event in upgrade_history(upgrade_id, rollout_id, agent=f"dma-{index:06d}"):
        event_id = ids.new_id()
        metadata = EventMetadata(actor="scheduler", correlation_id=rollout_id, causation_id=previous)
        new_events.append(NewEvent(event_id=event_id, event=domain_event, metadata=metadata))
        previous = event_id
    return upgrade_stream_id(upgrade_id), new_events


def upgrade_streams(count: int) -> Iterator[Stream]:
    """``count`` upgrade streams, in rollouts of ``AGENTS_PER_ROLLOUT`` agents."""
    ids = UuidFactory()
    rollout_id = ids.new_id()
    for index in range(count):
        if index and index % AGENTS_PER_ROLLOUT == 0:
            rollout_id = ids.new_id()
        yield upgrade_stream(ids, rollout_id, index)


def check_history(stream: Stream) -> None:
    """Fail fast if the generated history is not one the engine would have written."""
    _, new_events = stream
    upgrade = AgentUpgrade.fold(new.event for new in new_events)
    if len(new_events) != EVENTS_PER_STREAM or upgrade.state != UpgradeState.COMPLETED:
        raise RuntimeError(f"generated stream has {len(new_events)} events and ends in {upgrade.state}")


def chained_records(codec: EventCodec, streams: Iterable[Stream],
                    clock: SystemClock) -> Iterator[list[StoredRecord]]:
    """The stored records of whole streams appended one after the other, hash chain included."""
    head_position, head_hash = 0, GENESIS_HASH
    for stream_id, new_events in streams:
        records = build_records(codec, new_events, stream_id=stream_id, stream_version=0,
                                head_position=head_position, head_hash=head_hash, recorded_at=clock.now())
        head_position, head_hash = records[-1].position, records[-1].hash
        yield records


def record_row(record: StoredRecord) -> dict[str, Any]:
    """The ``events`` table row of a stored record."""
    metadata = record.metadata
    return {
        "position": record.position, "event_id": record.event_id, "stream_id": record.stream_id,
        "stream_version": record.stream_version, "event_type": record.event_type,
        "schema_version": record.schema_version, "payload": record.payload, "actor": metadata.actor,
        "correlation_id": metadata.correlation_id, "causation_id": metadata.causation_id,
        "recorded_at": record.recorded_at, "hash": record.hash,
    }


class EsUpgrade(Aggregate):
    """The same upgrade as an ``eventsourcing`` aggregate: one decorated method per event type."""

    @event("AgentUpgradeScheduled")
    def __init__(self, upgrade_id: str, rollout_id: str | None, agent: str, package_sha256: str,
                 target_version: str, plan: dict[str, Any]) -> None:
        self.agent = agent
        self.target_version = target_version
        self.step: str | None = None

    @event("StepStarted")
    def step_started(self, step: str, attempt: int, idempotency_key: str) -> None:
        self.step = step

    @event("StepSucceeded")
    def step_succeeded(self, step: str, attempt: int, version_after: str | None) -> None:
        self.step = None

    @event("InstallPhaseReported")
    def install_phase_reported(self, phase: str, phase_index: int, phase_count: int) -> None:
        self.phase = phase

    @event("AgentUpgradeCompleted")
    def completed(self, version_after: str | None, manual_start_needed: bool) -> None:
        self.version_after = version_after


ES_METHODS = {"StepStarted": "step_started", "StepSucceeded": "step_succeeded",
              "InstallPhaseReported": "install_phase_reported", "AgentUpgradeCompleted": "completed"}


def eventsourcing_events(new_events: Sequence[NewEvent]) -> list[DomainEventProtocol[Any]]:
    """The aggregate events ``eventsourcing`` records for the same history, with the same payloads."""
    first, *rest = (new.event for new in new_events)
    upgrade = EsUpgrade(**first.model_dump(mode="json"))
    for domain_event in rest:
        getattr(upgrade, ES_METHODS[domain_event.event_type])(**domain_event.model_dump(mode="json"))
    return list(upgrade.collect_events())


@dataclass(frozen=True)
class Workload:
    """The same streams, as the store, the raw baseline and ``eventsourcing`` each take them."""

    streams: list[Stream]
    rows: list[list[dict[str, Any]]]
    """Pre-serialised ``events`` rows per stream, positions and hash chain included."""
    es_events: list[list[DomainEventProtocol[Any]]]

    @property
    def event_count(self) -> int:
        return len(self.streams) * EVENTS_PER_STREAM

    def head(self, stream_count: int) -> Workload:
        """The first ``stream_count`` streams (their rows are a prefix of the same hash chain)."""
        return Workload(self.streams[:stream_count], self.rows[:stream_count], self.es_events[:stream_count])


def build_workload(stream_count: int) -> Workload:
    streams = list(upgrade_streams(stream_count))
    check_history(streams[0])
    records = chained_records(default_codec(), streams, SystemClock())
    rows = [[record_row(r) for r in stream_records] for stream_records in records]
    es_events = [eventsourcing_events(new_events) for _, new_events in streams]
    return Workload(streams, rows, es_events)


# -- measured runs -----------------------------------------------------------------------------

Steps = Generator[int, None, None]
"""A measured run in steps: it yields 0 once set up (untimed), then how many events each step handled."""


def chunked(items: Sequence[T]) -> Iterator[Sequence[T]]:
    """``items`` in ``STEPS`` consecutive chunks."""
    size = max(1, -(-len(items) // STEPS))
    for start in range(0, len(items), size):
        yield items[start:start + size]


def interleave(what: str, runs: dict[str, Steps], expected: int) -> dict[str, Measurement]:
    """Run ``runs`` one step of each in turn, so that a change in the machine's load hits them alike."""
    seconds = dict.fromkeys(runs, 0.0)
    counts = dict.fromkeys(runs, 0)
    progress(f"{what} ...")
    with ExitStack() as stack:
        for steps in runs.values():
            stack.enter_context(closing(steps))
            next(steps)
        pending = dict(runs)
        while pending:
            for name, steps in list(pending.items()):
                start = time.perf_counter()
                count = next(steps, None)
                if count is None:
                    del pending[name]
                    continue
                seconds[name] += time.perf_counter() - start
                counts[name] += count
    measured = {name: Measurement(counts[name], seconds[name]) for name in runs}
    for name, result in measured.items():
        if result.count != expected:
            raise RuntimeError(f"{what}: {name} handled {result.count} events, expected {expected}")
        progress(f"{what}: {name}: {result.count:,} events in {result.seconds:.1f} s = "
                 f"{result.rate:,.0f} events/s")
    return measured


def store_appends(url: str, streams: Sequence[Stream], per_event: bool) -> Steps:
    engine = migrated_engine(url)
    store = SqlEventStore(engine, default_codec(), SystemClock())
    try:
        yield 0
        for chunk in chunked(streams):
            for stream_id, new_events in chunk:
                if per_event:
                    for version, new in enumerate(new_events):
                        store.append(stream_id, version, [new])
                else:
                    store.append(stream_id, 0, new_events)
            yield len(chunk) * EVENTS_PER_STREAM
    finally:
        engine.dispose()


def raw_appends(url: str, rows: Sequence[list[dict[str, Any]]], per_event: bool) -> Steps:
    """The same rows inserted with Core at the same commit granularity: no hashing, checks or lookups."""
    engine = migrated_engine(url)
    insert = events_table.insert()
    try:
        yield 0
        for chunk in chunked(rows):
            for stream_rows in chunk:
                for batch in ([row] for row in stream_rows) if per_event else [stream_rows]:
                    with engine.begin() as conn:
                        conn.execute(insert, batch)
            yield sum(map(len, chunk))
    finally:
        engine.dispose()


def eventsourcing_appends(url: str, aggregates: Sequence[list[DomainEventProtocol[Any]]],
                          per_event: bool) -> Steps:
    """One ``Application.save`` per event, or per aggregate with its 8 events."""
    app: Application[UUID] = Application(env=eventsourcing_env(url))
    try:
        yield 0
        for chunk in chunked(aggregates):
            for aggregate_events in chunk:
                if per_event:
                    for domain_event in aggregate_events:
                        app.save(domain_event)
                else:
                    app.save(*aggregate_events)
            yield sum(map(len, chunk))
    finally:
        app.close()


def store_reads(url: str) -> Steps:
    """``read_all`` over the whole store, decoding every event."""
    engine = create_db_engine(url)
    try:
        store = SqlEventStore(engine, default_codec(), SystemClock())
        store.head_position()  # the connection opened before the clock starts, as each peer's is
        events = store.read_all(page_size=PAGE_SIZE)
        yield 0
        while count := sum(1 for _ in islice(events, PAGE_SIZE)):
            yield count
    finally:
        engine.dispose()


def raw_pages(engine: sa.Engine) -> Iterator[Sequence[sa.Row[Any]]]:
    """Every row with all its columns, in pages by position as ``read_all`` pages, with Core."""
    position = 0
    while True:
        query = (sa.select(*events_table.c).where(events_table.c.position > position)
                 .order_by(events_table.c.position).limit(PAGE_SIZE))
        with engine.connect() as conn:
            rows = conn.execute(query).all()
        if not rows:
            return
        position = rows[-1].position
        yield rows


def _open_connection(engine: sa.Engine) -> None:
    """Open a pooled connection (and give it back) before a measurement, as every peer does before its clock
    starts: the measures compare reading, not connecting."""
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT 1"))


def raw_reads(url: str) -> Steps:
    """Every row with all its columns, paged by position as ``read_all`` pages."""
    engine = create_db_engine(url)
    try:
        _open_connection(engine)
        yield 0
        for rows in raw_pages(engine):
            yield len(rows)
    finally:
        engine.dispose()


def eventsourcing_reads(url: str) -> Steps:
    """The notifications in pages, each decoded into its domain event as ``read_all`` decodes."""
    app: Application[UUID] = Application(env=eventsourcing_env(url))
    start = 0
    try:
        app.recorder.max_notification_id()  # the connection opened before the clock starts, as each peer's is
        yield 0
        while notifications := app.recorder.select_notifications(start=start, limit=PAGE_SIZE,
                                                                 inclusive_of_start=False):
            for notification in notifications:
                app.mapper.to_domain_event(notification)
            start = notifications[-1].id
            yield len(notifications)
    finally:
        app.close()


def store_export(url: str, path: Path) -> Steps:
    """``dma-upgrade audit export --format jsonl`` of every event into ``path``, a page of lines per step."""
    engine = create_db_engine(url)
    summary = ExportSummary()
    try:
        store = SqlEventStore(engine, default_codec(), SystemClock())
        store.head_position()  # the connection opened before the clock starts, as the raw export's is
        with path.open("w", encoding="utf-8", newline="") as out:
            lines = export_lines(select_records(store, Selection()), ExportFormat.JSONL, summary)
            yield 0
            counted = 0
            while chunk := list(islice(lines, PAGE_SIZE)):
                out.writelines(chunk)
                exported = summary.exported  # counted as the lines are made
                yield exported - counted
                counted = exported
    finally:
        engine.dispose()


def raw_export(url: str, path: Path) -> Steps:
    """The same rows selected with Core, paged by position, and the same lines written with ``json.dumps``."""
    engine = create_db_engine(url)
    exported = 0
    last: Any = None
    try:
        _open_connection(engine)
        with path.open("w", encoding="utf-8", newline="") as out:
            yield 0
            for rows in raw_pages(engine):
                out.writelines(json.dumps(export_fields(row), ensure_ascii=False) + "\n" for row in rows)
                last, exported = rows[-1], exported + len(rows)
                yield len(rows)
            anchor = None if last is None else f"{last.hash}@{last.position}"
            out.write(json.dumps({"anchor": anchor, "exported": exported}) + "\n")
    finally:
        engine.dispose()


def export_fields(row: sa.Row[Any]) -> dict[str, Any]:
    """An ``events`` row as the audit export's ``jsonl`` writes it."""
    return {"position": row.position, "recorded_at": utc_timestamp(row.recorded_at), "actor": row.actor,
            "stream_id": row.stream_id, "stream_version": row.stream_version, "event_type": row.event_type,
            "schema_version": row.schema_version, "event_id": str(row.event_id),
            "correlation_id": None if row.correlation_id is None else str(row.correlation_id),
            "causation_id": None if row.causation_id is None else str(row.causation_id), "hash": row.hash,
            "payload": json.loads(row.payload)}


def same_bytes(first: Path, second: Path) -> None:
    if first.read_bytes() != second.read_bytes():
        raise RuntimeError(f"{first} and {second} differ: the raw export does not write what the store's does")


def migrated_engine(url: str) -> Engine:
    engine = create_db_engine(url)
    migrate(engine)
    return engine


def eventsourcing_env(url: str) -> dict[str, str]:
    """The ``eventsourcing`` persistence settings for the same database as ``url``."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": parsed.database or ""}
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres", "POSTGRES_DBNAME": parsed.database or "",
        "POSTGRES_HOST": parsed.host or "localhost", "POSTGRES_PORT": str(parsed.port or 5432),
        "POSTGRES_USER": parsed.username or "", "POSTGRES_PASSWORD": parsed.password or "",
    }


def verify_store_chain(url: str) -> int:
    engine = create_db_engine(url)
    try:
        verdict = verify_chain(SqlEventStore(engine, default_codec(), SystemClock()).read_records())
    finally:
        engine.dispose()
    if not verdict.ok:
        raise RuntimeError(f"hash chain broken at {verdict.broken_at}: {verdict.reason}")
    return verdict.verified


# -- peak memory of a reader -------------------------------------------------------------------


@dataclass(frozen=True)
class ReaderMemory:
    events: int
    seconds: float
    rss_before_mib: float
    peak_rss_mib: float
    vm_hwm_mib: float | None
    """The kernel's own peak RSS of the reader (``VmHWM``), a cross-check where /proc exists."""


def generated_rows(event_count: int) -> Iterator[dict[str, Any]]:
    """Rows of ``event_count`` events (rounded up to whole streams) with a valid hash chain."""
    streams = upgrade_streams(-(-event_count // EVENTS_PER_STREAM))
    for records in chained_records(default_codec(), streams, SystemClock()):
        yield from map(record_row, records)


def stored_rows(url: str) -> Iterator[dict[str, Any]]:
    """The rows of an existing store, in global order."""
    engine = create_db_engine(url)
    try:
        yield from map(record_row, SqlEventStore(engine, default_codec(), SystemClock()).read_records())
    finally:
        engine.dispose()


def insert_rows(url: str, rows: Iterator[dict[str, Any]]) -> int:
    """Bulk insert ``rows`` into a freshly migrated store, ``ROWS_PER_BULK_INSERT`` per transaction."""
    engine = migrated_engine(url)
    inserted = 0
    try:
        while batch := list(islice(rows, ROWS_PER_BULK_INSERT)):
            with engine.begin() as conn:
                bulk_insert(conn, batch)
            inserted += len(batch)
    finally:
        engine.dispose()
    return inserted


def bulk_insert(conn: sa.Connection, rows: list[dict[str, Any]]) -> None:
    """Insert rows into ``events``: through COPY on PostgreSQL, an executemany elsewhere."""
    if conn.dialect.name != "postgresql":
        conn.execute(events_table.insert(), rows)
        return
    columns = [column.name for column in events_table.c]
    cursor = cast(psycopg.Connection[Any], conn.connection.driver_connection).cursor()
    with cursor.copy(f"COPY events ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row([row[name] for name in columns])


LAUNCHER = "import subprocess, sys; sys.exit(subprocess.run(sys.argv[1:]).returncode)"
"""Starts the reader from a small process: on Linux a process's ``ru_maxrss`` keeps the high-water
mark of the memory it was forked from, so a reader started straight from this large benchmark process
would report this process's peak instead of its own."""


def measure_reader_memory(url: str) -> ReaderMemory:
    """Run a process of its own that only reads every event, and take its figures."""
    command = [sys.executable, "-c", LAUNCHER, sys.executable, "-m", "bench.event_store", "--reader-url", url]
    done = subprocess.run(command, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, text=True, check=True)
    return ReaderMemory(**json.loads(done.stdout))


def run_reader(url: str) -> None:
    """The child process: iterate ``read_all`` over the whole store and print its figures as JSON."""
    engine = create_db_engine(url)
    store = SqlEventStore(engine, default_codec(), SystemClock())
    rss_before = peak_rss_mib()
    read = measure(lambda: sum(1 for _ in store.read_all(page_size=PAGE_SIZE)))
    print(json.dumps({"events": read.count, "seconds": read.seconds, "rss_before_mib": rss_before,
                      "peak_rss_mib": peak_rss_mib(), "vm_hwm_mib": vm_hwm_mib()}))


# -- backends ----------------------------------------------------------------------------------


class Backend(Protocol):
    name: str

    def fresh_database(self, label: str) -> AbstractContextManager[str]:
        """The URL of an empty database, for one run."""
        ...

    def reader_database(self, source_url: str) -> AbstractContextManager[str]:
        """The URL of a database holding the events of the SQLite store at ``source_url``."""
        ...


class SqliteBackend:
    name = "SQLite"

    def __init__(self, directory: Path) -> None:
        self._directory = directory

    @contextmanager
    def fresh_database(self, label: str) -> Iterator[str]:
        try:
            yield f"sqlite:///{self._directory / label}.db"
        finally:
            for leftover in self._directory.glob(f"{label}.db*"):
                leftover.unlink()

    def reader_database(self, source_url: str) -> AbstractContextManager[str]:
        return nullcontext(source_url)


class PostgresBackend:
    name = "PostgreSQL"

    def __init__(self, admin: Engine, prefix: str) -> None:
        self._admin = admin
        self._prefix = prefix

    @contextmanager
    def fresh_database(self, label: str) -> Iterator[str]:
        """A database of its own, created through the AUTOCOMMIT admin connection and dropped after."""
        name = f"{self._prefix}_{label}"
        with self._admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        try:
            yield self._admin.url.set(database=name).render_as_string(hide_password=False)
        finally:
            with self._admin.connect() as conn:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    @contextmanager
    def reader_database(self, source_url: str) -> Iterator[str]:
        with self.fresh_database("reader") as url:
            timed(f"{self.name} copy of the reader's events", partial(insert_rows, url, stored_rows(source_url)))
            yield url


@contextmanager
def sqlite_backend() -> Iterator[Backend]:
    with tempfile.TemporaryDirectory(prefix="dma_upgrade_bench_") as directory:
        yield SqliteBackend(Path(directory))


@contextmanager
def postgres_backend(admin_url: str) -> Iterator[Backend]:
    """Databases named ``dma_upgrade_bench_<pid>_<run>`` on the server of ``admin_url``."""
    admin = sa.create_engine(normalise_url(admin_url), isolation_level="AUTOCOMMIT")
    try:
        yield PostgresBackend(admin, f"dma_upgrade_bench_{os.getpid()}")
    finally:
        admin.dispose()


# -- running and reporting ---------------------------------------------------------------------


@dataclass
class Results:
    appends: dict[str, dict[str, Measurement]] = field(default_factory=dict)
    """By granularity, then by system."""
    reads: dict[str, Measurement] = field(default_factory=dict)
    exports: dict[str, Measurement] = field(default_factory=dict)
    """The store's audit export and the raw one."""
    reader: ReaderMemory | None = None
    load_average: float = field(default_factory=lambda: os.getloadavg()[0])


def timed(what: str, action: Callable[[], int]) -> Measurement:
    progress(f"{what} ...")
    result = measure(action)
    progress(f"{what}: {result.count:,} events in {result.seconds:.1f} s = {result.rate:,.0f} events/s")
    return result


def run_backend(backend: Backend, workloads: dict[str, Workload], reader_source: str) -> Results:
    """Every measurement on one backend; ``workloads`` maps each granularity to the streams it appends."""
    results = Results()
    for granularity, label in GRANULARITIES.items():
        workload = workloads[granularity]
        per_event = granularity == "event"
        with ExitStack() as stack:
            urls = {system: stack.enter_context(backend.fresh_database(f"{system}_{granularity}"))
                    for system in SYSTEMS}
            results.appends[granularity] = interleave(f"{backend.name} append {label}", {
                "store": store_appends(urls["store"], workload.streams, per_event),
                "raw": raw_appends(urls["raw"], workload.rows, per_event),
                "eventsourcing": eventsourcing_appends(urls["eventsourcing"], workload.es_events, per_event),
            }, workload.event_count)
            if not per_event:
                timed(f"{backend.name} verify the raw rows' hash chain", partial(verify_store_chain, urls["raw"]))
                results.reads = interleave(f"{backend.name} read all", {
                    "store": store_reads(urls["store"]),
                    "raw": raw_reads(urls["store"]),
                    "eventsourcing": eventsourcing_reads(urls["eventsourcing"]),
                }, workload.event_count)
                results.exports = measure_exports(backend.name, urls["store"], workload.event_count)
    with backend.reader_database(reader_source) as url:
        progress(f"{backend.name} peak RSS of a process that reads every event ...")
        results.reader = measure_reader_memory(url)
        progress(f"{backend.name} reader: {results.reader}")
    return results


def measure_exports(backend_name: str, url: str, expected: int) -> dict[str, Measurement]:
    """The store's audit export and the raw one of the store at ``url``, interleaved; their files compared."""
    with tempfile.TemporaryDirectory(prefix="dma_upgrade_bench_export_") as directory:
        files = {name: Path(directory) / f"{name}.jsonl" for name in ("store", "raw")}
        measured = interleave(f"{backend_name} audit export, jsonl", {
            "store": store_export(url, files["store"]), "raw": raw_export(url, files["raw"])}, expected)
        same_bytes(files["store"], files["raw"])
    return measured


def verdict(value: float, target: float) -> str:
    return "meets" if value >= target else "BELOW"


def report(backend_name: str, results: Results) -> None:
    rows: list[list[str]] = []
    for granularity, label in GRANULARITIES.items():
        measured = results.appends[granularity]
        rows += rate_rows(f"append {label}", measured, SYSTEM_LABELS)
        rows += ratio_rows(f"append {label}", measured, APPEND_TARGET, ES_TARGET)
    read_labels = {"store": "SqlEventStore.read_all, decoded", "raw": "raw Core rows",
                   "eventsourcing": "eventsourcing notifications, decoded"}
    rows += rate_rows("read all", results.reads, read_labels)
    rows += ratio_rows("read all", results.reads, READ_TARGET, ES_TARGET)
    exports = results.exports
    to_raw = ratio(exports["store"].rate, exports["raw"].rate)
    rows += [["audit export jsonl: store's export", f"{exports['store'].count:,}", f"{exports['store'].rate:,.0f}",
              "", "", ""],
             ["audit export jsonl: raw Core + json.dumps", f"{exports['raw'].count:,}", f"{exports['raw'].rate:,.0f}",
              "", "", ""],
             ["audit export jsonl: store / raw", "", "", f"{to_raw:.2f}x", f">= {EXPORT_TARGET:.2f}x",
              verdict(to_raw, EXPORT_TARGET)]]
    print_table(f"{backend_name}: streams of {EVENTS_PER_STREAM} events, reads in pages of {PAGE_SIZE}; "
                f"load average {results.load_average:.1f} at the start, on {os.cpu_count()} cores",
                ["measure", "events", "events/s", "ratio", "target", "verdict"], rows)
    reader = results.reader
    if reader is not None:
        vm_hwm = "n/a" if reader.vm_hwm_mib is None else f"{reader.vm_hwm_mib:.1f} MiB"
        peak_ok = "meets" if reader.peak_rss_mib < RSS_TARGET_MIB else "ABOVE"
        print(f"peak RSS (ru_maxrss) of a process iterating SqlEventStore.read_all over {reader.events:,} "
              f"events: {reader.peak_rss_mib:.1f} MiB (target < {RSS_TARGET_MIB:.0f} MiB: {peak_ok}); "
              f"{reader.rss_before_mib:.1f} MiB before reading; VmHWM {vm_hwm}; "
              f"read at {reader.events / reader.seconds:,.0f} events/s")


def rate_rows(what: str, measured: dict[str, Measurement], labels: dict[str, str]) -> list[list[str]]:
    return [[f"{what}: {labels[s]}", f"{measured[s].count:,}", f"{measured[s].rate:,.0f}", "", "", ""]
            for s in SYSTEMS]


def ratio_rows(what: str, measured: dict[str, Measurement], raw_target: float,
               es_target: float | None) -> list[list[str]]:
    """store / raw against ``raw_target``, and store / eventsourcing against ``es_target`` if any."""
    to_raw = ratio(measured["store"].rate, measured["raw"].rate)
    to_es = ratio(measured["store"].rate, measured["eventsourcing"].rate)
    raw_cells = [f">= {raw_target:.2f}x", verdict(to_raw, raw_target)]
    es_cells = [f">= {es_target:.2f}x", verdict(to_es, es_target)] if es_target is not None else ["", ""]
    return [[f"{what}: store / raw", "", "", f"{to_raw:.2f}x", *raw_cells],
            [f"{what}: store / eventsourcing", "", "", f"{to_es:.2f}x", *es_cells]]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--streams", type=int, default=20_000, help="upgrade streams of 8 events to append")
    parser.add_argument("--per-event-streams", type=int, default=500,
                        help="how many of those streams to append at one transaction per event (at most "
                             "--streams): one commit per event is bound by the disk's flush time")
    parser.add_argument("--postgres-url", help="a PostgreSQL server URL whose user may create databases")
    parser.add_argument("--read-events", type=int, default=1_000_000,
                        help="events in the store whose reader's peak RSS is measured")
    parser.add_argument("--reader-url", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.reader_url:
        run_reader(args.reader_url)
        return
    progress(f"building {args.streams:,} upgrade streams of {EVENTS_PER_STREAM} events ...")
    workload = build_workload(args.streams)
    workloads = {"event": workload.head(args.per_event_streams), "stream": workload}
    gc.freeze()  # the workload lives throughout: keep it out of every collection that follows
    backends: list[Callable[[], AbstractContextManager[Backend]]] = [sqlite_backend]
    if args.postgres_url:
        backends.append(partial(postgres_backend, args.postgres_url))
    with tempfile.TemporaryDirectory(prefix="dma_upgrade_bench_reader_") as directory:
        reader_source = f"sqlite:///{directory}/reader.db"
        timed("bulk insert of the reader's events", partial(insert_rows, reader_source,
                                                            generated_rows(args.read_events)))
        for open_backend in backends:
            with open_backend() as backend:
                results = run_backend(backend, workloads, reader_source)
            report(backend.name, results)
    print(f"\n{NOTES}")


if __name__ == "__main__":
    main()
