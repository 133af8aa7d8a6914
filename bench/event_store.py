"""Benchmark of ``SqlEventStore`` against raw SQLAlchemy Core and the ``eventsourcing`` library.

Each backend (SQLite in a temporary directory, PostgreSQL when ``--postgres-url`` is given) gets:

- appends of N upgrade streams of 8 events at one transaction per stream, and of the first
  ``--per-event-streams`` of them at one transaction per event, through ``SqlEventStore.append``,
  through raw Core inserts of the same pre-serialised rows into the same table (no hashing,
  validation or head lookups), and through an ``eventsourcing`` application;
- a read of every event in global order, in pages of the same size, by each of the three;
- the peak RSS of a separate process that only iterates ``SqlEventStore.read_all`` over
  ``--read-events`` events.

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
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from functools import partial
from itertools import islice
from pathlib import Path
from typing import Any, Protocol
from uuid import UUID

if __package__ in (None, ""):  # run as a script: make the project root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sqlalchemy as sa
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, DomainEventProtocol, event
from sqlalchemy.engine import URL, Engine, make_url

from adapters.clock import SystemClock, UuidFactory
from adapters.sql.database import create_db_engine, migrate, normalise_url
from adapters.sql.event_store import SqlEventStore
from adapters.sql.schema import events as events_table
from bench._common import Measurement, measure, peak_rss_mib, print_table, progress, ratio, vm_hwm_mib
from engine.agent_upgrade import AgentUpgrade, upgrade_stream_id
from engine.catalog import default_codec
from engine.codec import EventCodec
from engine.event_log import build_records
from engine.events import Event, EventMetadata, NewEvent, StoredRecord
from engine.hashchain import GENESIS_HASH, verify_chain
from engine.upgrade_events import (
    AgentUpgradeCompleted,
    AgentUpgradePlan,
    AgentUpgradeScheduled,
    InstallPhaseReported,
    Step,
    StepStarted,
    StepSucceeded,
    UpgradeOptions,
)
from engine.upgrade_machine import UpgradeState

PROJECT_ROOT = Path(__file__).resolve().parents[1]
EVENTS_PER_STREAM = 8
PAGE_SIZE = 1000
AGENTS_PER_ROLLOUT = 100
STREAMS_PER_BULK_INSERT = 1000
APPEND_TARGET = 0.8
READ_TARGET = 0.5
RSS_TARGET_MIB = 200.0

TARGET_VERSION = "10.5.2.0-15000"
PACKAGE_SHA256 = hashlib.sha256(f"DataMiner {TARGET_VERSION} upgrade package".encode()).hexdigest()
INSTALL_PHASES = ("Stopping DataMiner", "Installing files")
PLAN = AgentUpgradePlan(options=UpgradeOptions(stop_snmp=False, auto_start=False))
"""Upload then install, two install phases, a manual start: 8 events from scheduled to completed."""

NOTES = """Notes:
- SqlEventStore and raw Core share create_db_engine(): SQLite in WAL mode with synchronous=NORMAL (no
  flush per commit), PostgreSQL with pool_pre_ping. eventsourcing's SQLite connections keep SQLite's
  default synchronous=FULL (a flush per commit); on PostgreSQL all three commit with the server's
  synchronous_commit.
- Raw Core inserts rows serialised and hash-chained beforehand into the same migrated events table.
- eventsourcing records the same payloads (model_dump of each event) as aggregate events; its read
  decodes every notification into a domain event, as read_all decodes every row."""

SYSTEMS = ("store", "raw", "eventsourcing")
GRANULARITIES = {"event": "1 txn/event", "stream": "1 txn/stream"}
SYSTEM_LABELS = {"store": "SqlEventStore", "raw": "raw Core", "eventsourcing": "eventsourcing"}

Stream = tuple[str, list[NewEvent]]


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


# -- appends -----------------------------------------------------------------------------------


def append_store(url: str, workload: Workload, per_event: bool) -> int:
    engine = migrated_engine(url)
    store = SqlEventStore(engine, default_codec(), SystemClock())
    try:
        for stream_id, new_events in workload.streams:
            if per_event:
                for version, new in enumerate(new_events):
                    store.append(stream_id, version, [new])
            else:
                store.append(stream_id, 0, new_events)
    finally:
        engine.dispose()
    return workload.event_count


def append_raw(url: str, workload: Workload, per_event: bool) -> int:
    engine = migrated_engine(url)
    insert = events_table.insert()
    try:
        for stream_rows in workload.rows:
            for batch in ([row] for row in stream_rows) if per_event else [stream_rows]:
                with engine.begin() as conn:
                    conn.execute(insert, batch)
    finally:
        engine.dispose()
    return workload.event_count


def append_eventsourcing(url: str, workload: Workload, per_event: bool) -> int:
    app: Application[UUID] = Application(env=eventsourcing_env(url))
    try:
        for stream_events in workload.es_events:
            if per_event:
                for domain_event in stream_events:
                    app.save(domain_event)
            else:
                app.save(*stream_events)
    finally:
        app.close()
    return workload.event_count


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


# -- reads -------------------------------------------------------------------------------------


def read_store(url: str) -> int:
    engine = create_db_engine(url)
    try:
        store = SqlEventStore(engine, default_codec(), SystemClock())
        return sum(1 for _ in store.read_all(page_size=PAGE_SIZE))
    finally:
        engine.dispose()


def read_raw(url: str) -> int:
    """Every row with all its columns, paged by position exactly as the store pages."""
    engine = create_db_engine(url)
    count, position = 0, 0
    try:
        while True:
            query = (sa.select(*events_table.c).where(events_table.c.position > position)
                     .order_by(events_table.c.position).limit(PAGE_SIZE))
            with engine.connect() as conn:
                rows = conn.execute(query).all()
            if not rows:
                return count
            count += len(rows)
            position = rows[-1][0]
    finally:
        engine.dispose()


def read_eventsourcing(url: str) -> int:
    """Every notification in pages, decoded into domain events as ``read_all`` decodes."""
    app: Application[UUID] = Application(env=eventsourcing_env(url))
    count, start = 0, 0
    try:
        while notifications := app.recorder.select_notifications(start=start, limit=PAGE_SIZE,
                                                                 inclusive_of_start=False):
            for notification in notifications:
                app.mapper.to_domain_event(notification)
            count += len(notifications)
            start = notifications[-1].id
    finally:
        app.close()
    return count


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


def populate(url: str, event_count: int) -> int:
    """Bulk insert ``event_count`` events (rounded up to whole streams) with a valid hash chain."""
    engine = migrated_engine(url)
    streams = upgrade_streams(-(-event_count // EVENTS_PER_STREAM))
    records = chained_records(default_codec(), streams, SystemClock())
    inserted = 0
    try:
        while batch := list(islice(records, STREAMS_PER_BULK_INSERT)):
            rows = [record_row(r) for rs in batch for r in rs]
            with engine.begin() as conn:
                bulk_insert(conn, rows)
            inserted += len(rows)
    finally:
        engine.dispose()
    return inserted


def bulk_insert(conn: sa.Connection, rows: list[dict[str, Any]]) -> None:
    """Insert rows into ``events``: through COPY on PostgreSQL, an executemany elsewhere."""
    if conn.dialect.name != "postgresql":
        conn.execute(events_table.insert(), rows)
        return
    columns = [column.name for column in events_table.c]
    cursor = conn.connection.driver_connection.cursor()
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
        """The URL of an empty database, for one measurement."""
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


class PostgresBackend:
    name = "PostgreSQL"

    def __init__(self, url: URL) -> None:
        self._url = url

    @contextmanager
    def fresh_database(self, label: str) -> Iterator[str]:
        """The benchmark database with an empty ``public`` schema and a fresh checkpoint."""
        admin = sa.create_engine(self._url, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                conn.exec_driver_sql("DROP SCHEMA public CASCADE")
                conn.exec_driver_sql("CREATE SCHEMA public")
                conn.exec_driver_sql("CHECKPOINT")
        finally:
            admin.dispose()
        yield self._url.render_as_string(hide_password=False)


@contextmanager
def sqlite_backend() -> Iterator[Backend]:
    with tempfile.TemporaryDirectory(prefix="dma_upgrade_bench_") as directory:
        yield SqliteBackend(Path(directory))


@contextmanager
def postgres_backend(admin_url: str) -> Iterator[Backend]:
    """A database of its own on the server of ``admin_url``, dropped at the end."""
    url = normalise_url(admin_url)
    name = f"dma_upgrade_bench_{os.getpid()}"
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        try:
            yield PostgresBackend(url.set(database=name))
        finally:
            with admin.connect() as conn:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.dispose()


# -- running and reporting ---------------------------------------------------------------------


@dataclass
class Results:
    appends: dict[tuple[str, str], Measurement] = field(default_factory=dict)
    reads: dict[str, Measurement] = field(default_factory=dict)
    reader: ReaderMemory | None = None
    load_average: float = field(default_factory=lambda: os.getloadavg()[0])


APPENDERS: dict[str, Callable[[str, Workload, bool], int]] = {
    "store": append_store, "raw": append_raw, "eventsourcing": append_eventsourcing}
READERS: dict[str, Callable[[str], int]] = {"store": read_store, "raw": read_raw}


def timed(what: str, action: Callable[[], int], expected: int | None = None) -> Measurement:
    progress(f"{what} ...")
    result = measure(action)
    if expected is not None and result.count != expected:
        raise RuntimeError(f"{what}: handled {result.count} events, expected {expected}")
    progress(f"{what}: {result.count:,} events in {result.seconds:.1f} s = {result.rate:,.0f} events/s")
    return result


def run_backend(backend: Backend, workloads: dict[str, Workload], read_events: int) -> Results:
    """Every measurement on one backend; ``workloads`` maps each granularity to the streams it appends."""
    results = Results()
    for granularity, label in GRANULARITIES.items():
        per_event = granularity == "event"
        workload = workloads[granularity]
        for system in SYSTEMS:
            with backend.fresh_database(f"{system}-{granularity}") as url:
                append = partial(APPENDERS[system], url, workload, per_event)
                results.appends[(system, granularity)] = timed(
                    f"{backend.name} append {SYSTEM_LABELS[system]} {label}", append, workload.event_count)
                if not per_event:
                    run_reads(backend.name, system, url, workload.event_count, results)
    with backend.fresh_database("reader-memory") as url:
        populated = timed(f"{backend.name} bulk insert for the reader", partial(populate, url, read_events))
        progress(f"{backend.name} peak RSS of a process reading {populated.count:,} events ...")
        results.reader = measure_reader_memory(url)
        progress(f"{backend.name} reader: {results.reader}")
    return results


def run_reads(backend_name: str, system: str, url: str, total: int, results: Results) -> None:
    """Reads of the table just written by ``system`` (store and raw both read the store's table)."""
    if system == "raw":
        timed(f"{backend_name} verify the raw rows' hash chain", partial(verify_store_chain, url), total)
    elif system == "eventsourcing":
        results.reads[system] = timed(f"{backend_name} read eventsourcing", partial(read_eventsourcing, url),
                                      total)
    else:
        for reader, read in READERS.items():
            results.reads[reader] = timed(f"{backend_name} read {SYSTEM_LABELS[reader]}", partial(read, url),
                                          total)


def verdict(value: float, target: float) -> str:
    return "meets" if value >= target else "BELOW"


def report(backend_name: str, results: Results) -> None:
    rows: list[list[str]] = []
    for granularity, label in GRANULARITIES.items():
        measured = {system: results.appends[(system, granularity)] for system in SYSTEMS}
        rows += rate_rows(f"append {label}", measured, SYSTEM_LABELS)
        rows += ratio_rows(f"append {label}", measured, APPEND_TARGET, 1.0)
    read_labels = {"store": "SqlEventStore.read_all, decoded", "raw": "raw Core rows",
                   "eventsourcing": "eventsourcing notifications, decoded"}
    rows += rate_rows("read all", results.reads, read_labels)
    rows += ratio_rows("read all", results.reads, READ_TARGET, None)
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
    for open_backend in backends:
        with open_backend() as backend:
            results = run_backend(backend, workloads, args.read_events)
        report(backend.name, results)
    print(f"\n{NOTES}")


if __name__ == "__main__":
    main()
