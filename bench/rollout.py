"""End-to-end benchmark of one whole-cluster rollout driven by ``RolloutRunner`` on ``SqlEventStore``.

Each backend (SQLite in a temporary directory, PostgreSQL in a database of its own when
``--postgres-url`` is given) gets:

- N agents registered in one cluster (setup, not timed), a package built and uploaded, and a
  rollout of the whole cluster started with Delayed Start off;
- a timed ``RolloutRunner.run`` with a no-op waiter and a simulated gateway with zero step latency,
  counting the events appended during the run (head position after minus before);
- in the same process, the same number of events appended straight through ``SqlEventStore.append``
  on a fresh database of the same backend: the payloads the rollout recorded, as fresh streams of
  ``EVENTS_PER_STREAM`` events, one append (one transaction) per event as the runner does.

    python bench/rollout.py [--agents 2000] [--max-concurrent N] [--postgres-url URL]
                               [--no-sqlite] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys
import tempfile
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

if __package__ in (None, ""):  # run as a script: make the project root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine

from bench._common import Measurement, measure, print_table, progress, ratio
from dma_upgrade.adapters.agents.simulated_gateway import SimulatedAgent, SimulatedAgentGateway, modern_facts
from dma_upgrade.adapters.bootstrap import bootstrap
from dma_upgrade.adapters.clock import SystemClock, UuidFactory
from dma_upgrade.adapters.packages.archive import build_package, inspect_package
from dma_upgrade.adapters.settings import Settings
from dma_upgrade.adapters.sql.database import create_db_engine, migrate, normalise_url
from dma_upgrade.adapters.sql.event_store import SqlEventStore
from dma_upgrade.engine.agent_events import AgentFactsReported, AgentRegistered, agent_stream_id
from dma_upgrade.engine.catalog import default_codec
from dma_upgrade.engine.events import EventMetadata, NewEvent, RecordedEvent
from dma_upgrade.engine.packages import PackageKind, PackageManifest
from dma_upgrade.engine.rollout import RolloutState
from dma_upgrade.engine.service import AgentSelection, OptionOverrides, RolloutSpec, UpgradeService
from dma_upgrade.engine.versions import parse_version

CLUSTER = "bench"
ACTOR = "bench"
TARGET_VERSION = "10.4.9.0-14794"
EVENTS_PER_STREAM = 8
TARGET_RATIO = 0.5
DEFAULT_MAX_CONCURRENT = 64
"""The runner runs each in-flight agent on a thread of its own, holding a pooled connection at a time:
2000 threads (and PostgreSQL's 100 connections) are too many, so the default caps it here."""


class NoWait:
    """A waiter that returns at once (the runner's polls and delays cost nothing)."""

    def wait(self, seconds: float) -> None:
        return None


# -- backends ----------------------------------------------------------------------------------


class Backend(Protocol):
    @property
    def name(self) -> str:
        """How the figures name the backend."""
        ...

    def fresh_database(self, label: str) -> AbstractContextManager[str]:
        """The URL of an empty database, for one measurement."""
        ...


@dataclass(frozen=True)
class SqliteBackend:
    directory: Path
    name: str = "SQLite"

    @contextmanager
    def fresh_database(self, label: str) -> Iterator[str]:
        yield f"sqlite:///{self.directory / label}.db"


@dataclass(frozen=True)
class PostgresBackend:
    admin_url: URL
    name: str = "PostgreSQL"

    @contextmanager
    def fresh_database(self, label: str) -> Iterator[str]:
        """A database named ``dma_upgrade_bench_rollout_<pid>[_label]``, dropped at the end."""
        database = f"dma_upgrade_bench_rollout_{os.getpid()}" + ("" if label == "rollout" else f"_{label}")
        admin = sa.create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                conn.exec_driver_sql(f'CREATE DATABASE "{database}"')
            try:
                yield self.admin_url.set(database=database).render_as_string(hide_password=False)
            finally:
                with admin.connect() as conn:
                    conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        finally:
            admin.dispose()


def migrated_engine(url: str, pool_size: int) -> Engine:
    engine = create_db_engine(url, pool_size=pool_size)
    migrate(engine)
    return engine


# -- the rollout -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RolloutResult:
    agents: int
    max_concurrent: int
    run: Measurement
    """Events appended during ``RolloutRunner.run`` and the seconds it took."""
    upgrade_events: int
    """Of those, the events in agent upgrade streams (each one a transition of an upgrade)."""
    recorded: list[RecordedEvent]
    profile: str | None


def fleet(agent_count: int) -> list[SimulatedAgent]:
    """The simulated agents of the cluster, each with its own address."""
    version = modern_facts().version
    return [SimulatedAgent(name=f"dma-{index:05d}", address=f"10.{index // 65536}.{index // 256 % 256}.{index % 256}",
                           cluster=CLUSTER, version=version) for index in range(agent_count)]


def register_agents(service: UpgradeService, agents: list[SimulatedAgent]) -> None:
    """The events ``register_agent`` records, appended directly: it re-reads the whole inventory per
    agent, which is quadratic and only setup here."""
    facts = modern_facts()
    for agent in agents:
        registered = AgentRegistered(name=agent.name, address=agent.address, cluster=CLUSTER, version=facts.version,
                                     dataminer_id=None, failover_partner=None, failover_role=None)
        service.append(agent_stream_id(agent.name), 0, [registered, AgentFactsReported(facts=facts)], actor=ACTOR)


def run_rollout(url: str, agent_count: int, max_concurrent: str | None, profile: bool) -> RolloutResult:
    simulated = fleet(agent_count)
    app = bootstrap(Settings(database_url=url), check_schema=False,
                    pool_size=min(int(max_concurrent or agent_count), 80) + 1,
                    gateway=SimulatedAgentGateway(simulated), waiter=NoWait())
    try:
        migrate(app.engine)
        store, service = app.store, app.service
        register_agents(service, simulated)
        agents = service.agents()
        manifest = PackageManifest.for_version(parse_version(TARGET_VERSION), PackageKind.FULL)
        with tempfile.TemporaryDirectory(prefix="dma_upgrade_bench_pkg_") as directory:
            inspected = inspect_package(build_package(manifest, Path(directory)))
        service.record_upload(sha256=inspected.sha256, file_name=f"{TARGET_VERSION}.dmupgrade",
                              size=inspected.size, manifest=inspected.manifest, actor=ACTOR, checked_agents=agents)
        spec = RolloutSpec(package=inspected.sha256, selection=AgentSelection(cluster=CLUSTER),
                           overrides=OptionOverrides(delayed_start=False), max_concurrent=max_concurrent)
        planned = service.start_rollout(spec, actor=ACTOR)
        runner = app.runner()

        before = store.head_position()
        profiler = cProfile.Profile() if profile else None
        progress(f"running the rollout of {agent_count} agents (max concurrent {planned.max_concurrent})")

        def run() -> int:
            if profiler is not None:
                profiler.enable()
            try:
                rollout = runner.run(planned.rollout_id)
            finally:
                if profiler is not None:
                    profiler.disable()
            if rollout.state is not RolloutState.COMPLETED:
                raise RuntimeError(f"the rollout ended {rollout.state}")
            return store.head_position() - before

        measurement = measure(run)
        recorded = list(store.read_all(after=before))
        return RolloutResult(
            agents=agent_count, max_concurrent=planned.max_concurrent, run=measurement,
            upgrade_events=sum(r.stream_id.startswith("upgrade-") for r in recorded),
            recorded=recorded, profile=None if profiler is None else top_cumulative(profiler),
        )
    finally:
        app.close()


def top_cumulative(profiler: cProfile.Profile, limit: int = 10) -> str:
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats(pstats.SortKey.CUMULATIVE).print_stats(limit)
    return out.getvalue()


# -- the store alone ---------------------------------------------------------------------------


def append_store(url: str, recorded: list[RecordedEvent]) -> int:
    """The recorded payloads as fresh streams of ``EVENTS_PER_STREAM``, one append per event."""
    ids = UuidFactory()
    engine = migrated_engine(url, pool_size=5)
    try:
        store = SqlEventStore(engine, default_codec(), SystemClock())
        for start in range(0, len(recorded), EVENTS_PER_STREAM):
            stream_id = f"bench-{ids.new_id()}"
            for version, original in enumerate(recorded[start:start + EVENTS_PER_STREAM]):
                metadata = EventMetadata(actor=original.metadata.actor,
                                         correlation_id=original.metadata.correlation_id)
                store.append(stream_id, version, [NewEvent(event_id=ids.new_id(), event=original.event,
                                                           metadata=metadata)])
    finally:
        engine.dispose()
    return len(recorded)


# -- reporting ---------------------------------------------------------------------------------


def bench_backend(backend: Backend, agent_count: int, max_concurrent: str | None, profile: bool) -> list[str]:
    with backend.fresh_database("rollout") as url:
        result = run_rollout(url, agent_count, max_concurrent, profile)
    progress(f"{backend.name}: appending {result.run.count} events straight through SqlEventStore")
    with backend.fresh_database("store") as url:
        store = measure(lambda: append_store(url, result.recorded))
    engine_rate = result.run.rate
    share = ratio(engine_rate, store.rate)
    per_event_ms = 1000 * result.run.seconds / result.run.count
    per_transition_ms = 1000 * result.run.seconds / result.upgrade_events
    if result.profile is not None:
        print(f"\ncProfile of RolloutRunner.run on {backend.name}, top 10 by cumulative time "
              f"(the calling thread only: agent threads are not profiled):")
        print(result.profile)
    return [backend.name, str(result.agents), str(result.max_concurrent), str(result.run.count),
            str(result.upgrade_events), f"{result.run.seconds:.2f}", f"{engine_rate:,.0f}",
            f"{per_event_ms:.2f}", f"{per_transition_ms:.2f}", f"{store.rate:,.0f}",
            f"{share:.2f}x", f">= {TARGET_RATIO}x {'ok' if share >= TARGET_RATIO else 'MISSED'}"]


HEADERS = ["backend", "agents", "max conc.", "events", "upgrade events", "seconds", "events/s",
           "ms/event", "ms/transition", "store append/s", "engine/store", "target"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, default=2000, help="agents in the cluster (default 2000)")
    parser.add_argument("--max-concurrent", default=str(DEFAULT_MAX_CONCURRENT),
                        help=f"the rollout's max concurrent agents, as the CLI takes it (default "
                             f"{DEFAULT_MAX_CONCURRENT})")
    parser.add_argument("--postgres-url", help="also run on PostgreSQL (a database of its own is created)")
    parser.add_argument("--no-sqlite", action="store_true", help="skip SQLite (with --postgres-url)")
    parser.add_argument("--profile", action="store_true", help="print a cProfile top 10 of the run")
    args = parser.parse_args(argv)

    backends: list[tuple[str, str | None]] = [] if args.no_sqlite and args.postgres_url else [("sqlite", None)]
    if args.postgres_url:
        backends.append(("postgresql", args.postgres_url))
    rows = []
    with tempfile.TemporaryDirectory(prefix="dma_upgrade_bench_rollout_") as directory:
        for kind, url in backends:
            backend: Backend = SqliteBackend(Path(directory)) if kind == "sqlite" \
                else PostgresBackend(normalise_url(url or ""))
            rows.append(bench_backend(backend, args.agents, args.max_concurrent, args.profile))
    print(f"max concurrent: {args.max_concurrent} (not all agents: the runner uses one thread per in-flight "
          f"agent, each needing a pooled connection)")
    print_table(f"Rollout of one cluster through RolloutRunner.run (Delayed Start off, no-op waiter, "
                f"simulated gateway with zero step latency; pid {os.getpid()})", HEADERS, rows)
    print("\nevents: every event appended during the run (head position after minus before), end to end;"
          "\nms/event = seconds / events; ms/transition = seconds / upgrade events (the events of agent"
          "\nupgrade streams, each a state change of one upgrade; the rest are rollout and agent events)."
          "\nstore append/s: the same number of events, the rollout's payloads as fresh streams of "
          f"{EVENTS_PER_STREAM} events,\none SqlEventStore.append per event, on a fresh database of the same "
          "backend, in the same process.")


if __name__ == "__main__":
    main()
