"""Benchmark of replaying a large log: projection rebuild, audit export, raw scan, and ``eventsourcing``.

Setup (timed and reported apart): N events of realistic rollouts are generated into a fresh SQLite
store with a valid hash chain — agents registered with their facts, a package uploaded per rollout,
rollouts of ``ROLLOUT_SIZE`` agents (plan, claim, package used, start, per agent the scheduled
upgrade, every planned step with twelve install phases, the agent's version change, completion,
then the rollout's completion and release), some install attempts failing and retried after a
backoff, and a few rollouts failing and then cancelled. Rows are built with
``engine.event_log.build_records`` and bulk inserted with an executemany per ``INSERT_BATCH`` rows.

Measured, over the same N events:

a. ``ProjectionRunner.rebuild()`` of every projection, in a process of its own (its peak RSS is its
   own: the process is started from a small launcher, not forked from this one), with one worker process
   per core as ``dma-upgrade projections rebuild`` does (the peak RSS reported is the largest of the
   rebuild process and the children it forked);
b. an audit export of everything, as JSON lines and as CSV (``adapters.audit.export``);
c. a raw scan of the events table: a Core select of every column, paged by position;
d. the ``eventsourcing`` library rebuilding N / 25 aggregates of 25 events each from its SQLite
   store with ``app.repository.get`` (storing them is setup, not timed).

    python bench/replay.py [--events 1000000] [--sqlite-path PATH] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import hashlib
import io
import json
import os
import pstats
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import zip_longest
from pathlib import Path
from typing import Any
from uuid import UUID

if __package__ in (None, ""):  # run as a script: make the project root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sqlalchemy as sa
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event
from sqlalchemy.engine import Engine

from bench._common import Measurement, measure, peak_rss_mib, print_table, progress, ratio, vm_hwm_mib
from dma_upgrade.adapters.audit.export import ExportFormat, Selection, atomic_output, export_records, select_records
from dma_upgrade.adapters.clock import SystemClock
from dma_upgrade.adapters.sql.database import create_db_engine, migrate
from dma_upgrade.adapters.sql.event_store import SqlEventStore
from dma_upgrade.adapters.sql.projection_runner import ProjectionRunner
from dma_upgrade.adapters.sql.read_models import sql_table
from dma_upgrade.adapters.sql.schema import events as events_table
from dma_upgrade.engine.agent_events import (
    AgentFactsReported,
    AgentRegistered,
    AgentVersionChanged,
    FailoverRole,
    agent_stream_id,
)
from dma_upgrade.engine.agent_upgrade import AgentUpgrade, upgrade_stream_id
from dma_upgrade.engine.catalog import default_codec
from dma_upgrade.engine.codec import EventCodec
from dma_upgrade.engine.event_log import build_records
from dma_upgrade.engine.events import Event, EventMetadata, NewEvent, StoredRecord
from dma_upgrade.engine.hashchain import GENESIS_HASH, verify_chain
from dma_upgrade.engine.packages import INSTALL_PHASES, AgentFacts, PackageKind, PackageManifest, package_file_name
from dma_upgrade.engine.rollout import Rollout, RolloutState
from dma_upgrade.engine.rollout_events import (
    CLAIMS_STREAM,
    SETTINGS_STREAM,
    FailoverPolicy,
    PackageUploaded,
    PackageUsed,
    PlannedAgent,
    RolloutCancelled,
    RolloutClaimed,
    RolloutCompleted,
    RolloutFailed,
    RolloutPlanned,
    RolloutReleased,
    RolloutStarted,
    SettingChanged,
    package_stream_id,
    rollout_stream_id,
)
from dma_upgrade.engine.upgrade_events import (
    AgentUpgradeCancelled,
    AgentUpgradeCompleted,
    AgentUpgradeFailed,
    AgentUpgradePlan,
    AgentUpgradeScheduled,
    InstallPhaseReported,
    Step,
    StepDelayed,
    StepFailed,
    StepStarted,
    StepSucceeded,
    UpgradeOptions,
)
from dma_upgrade.engine.upgrade_machine import UpgradeState
from dma_upgrade.projections.catalog import all_projections

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SEED = 20_251_130
CLUSTERS = 20
ROLLOUT_SIZE = 50
"""Agents per cluster, and so per rollout (each rollout upgrades one whole cluster)."""
MAX_CONCURRENT = 10
RETRIED_INSTALL_SHARE = 0.08
"""Share of agent upgrades whose first install attempt fails and is retried after a backoff."""
FAILED_ROLLOUT_EVERY = 40
"""Every this-many-th rollout has one agent failing its install three times: the rollout fails and is cancelled."""
RETRY_BUDGET = 2
BACKOFF_SECONDS = 5.0
DELAYED_START_SECONDS = 60
INSERT_BATCH = 50_000
"""Rows per executemany and per transaction while generating."""
SCAN_PAGE = 5000
REBUILD_BATCH = 20_000
ES_EVENTS_PER_AGGREGATE = 25
ES_SAVE_BATCH = 400
"""Aggregates per ``Application.save`` (one transaction) while storing the ``eventsourcing`` side."""

REBUILD_TARGET = 100_000.0
ES_RATIO_TARGET = 2.0
RSS_TARGET_MIB = 300.0

OPERATOR = "operator@ops"
ENGINE_ACTOR = "engine"
START_TIME = datetime(2025, 1, 6, 8, 0, tzinfo=UTC)

LAUNCHER = "import subprocess, sys; sys.exit(subprocess.run(sys.argv[1:]).returncode)"
"""Starts the rebuild from a small process: on Linux a child's ``ru_maxrss`` starts from the high-water
mark of the process it was forked from, so a child forked from this one would report this one's peak."""


# -- writing the log ---------------------------------------------------------------------------


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


class LogWriter:
    """Appends to an empty store as ``SqlEventStore.append`` would, but in bulk: one executemany
    per ``INSERT_BATCH`` rows. Keeps the head (position, hash) and every stream's version, and
    stops at ``limit`` events (an append crossing it is cut, as a crash would leave the log)."""

    def __init__(self, engine: Engine, codec: EventCodec, limit: int, rng: random.Random) -> None:
        self._engine = engine
        self._codec = codec
        self._rng = rng
        self.limit = limit
        self.head_position = 0
        self.head_hash = GENESIS_HASH
        self.versions: dict[str, int] = {}
        self.now = START_TIME
        self._rows: list[dict[str, Any]] = []
        self._insert = events_table.insert()
        self._metadata: dict[tuple[str, UUID | None], EventMetadata] = {}

    @property
    def full(self) -> bool:
        return self.head_position >= self.limit

    def new_id(self) -> UUID:
        return UUID(int=self._rng.getrandbits(128), version=4)

    def advance(self, seconds: float) -> datetime:
        """Move the log's clock on (the recorded-at times are synthetic and increasing)."""
        self.now += timedelta(seconds=seconds)
        return self.now

    def append(self, stream_id: str, new_events: Sequence[Event], *, actor: str,
               correlation_id: UUID | None = None) -> None:
        if self.full:
            return
        key = (actor, correlation_id)
        metadata = self._metadata.get(key)
        if metadata is None:
            metadata = self._metadata[key] = EventMetadata(actor=actor, correlation_id=correlation_id)
        batch = [NewEvent.model_construct(event_id=self.new_id(), event=e, metadata=metadata) for e in new_events]
        version = self.versions.get(stream_id, 0)
        records = build_records(self._codec, batch, stream_id=stream_id, stream_version=version,
                                head_position=self.head_position, head_hash=self.head_hash,
                                recorded_at=self.advance(0.05 + self._rng.random() * 0.5))
        records = records[:self.limit - self.head_position]
        self.versions[stream_id] = version + len(records)
        self.head_position, self.head_hash = records[-1].position, records[-1].hash
        self._rows.extend(map(record_row, records))
        if len(self._rows) >= INSERT_BATCH:
            self.flush()

    def flush(self) -> None:
        if not self._rows:
            return
        with self._engine.begin() as conn:
            conn.execute(self._insert, self._rows)
        self._rows = []


# -- the history -------------------------------------------------------------------------------

Append = tuple[str, list[Event]]
"""One append: a stream and its events."""


@dataclass
class Agent:
    name: str
    address: str
    cluster: str
    version: str
    dataminer_id: int
    partner: str | None = None
    role: FailoverRole | None = None


@dataclass
class HistoryStats:
    rollouts: int = 0
    failed_rollouts: int = 0
    agent_upgrades: int = 0
    retried_installs: int = 0
    checked_streams: int = 0
    by_rollout_state: dict[str, int] = field(default_factory=dict)


def make_agents() -> list[Agent]:
    """``CLUSTERS`` clusters of ``ROLLOUT_SIZE`` agents; the first two of each are a failover pair."""
    agents = []
    for c in range(CLUSTERS):
        for i in range(ROLLOUT_SIZE):
            agent = Agent(name=f"dma-{c:02d}-{i:02d}", address=f"10.{c}.0.{i + 10}", cluster=f"cluster-{c:02d}",
                          version="10.4.0.0-14112", dataminer_id=c * 100 + i + 1)
            if i < 2:
                agent.partner = f"dma-{c:02d}-{1 - i:02d}"
                agent.role = FailoverRole.MAIN if i == 0 else FailoverRole.BACKUP
            agents.append(agent)
    return agents


def facts(agent: Agent) -> AgentFacts:
    return AgentFacts(version=agent.version, os="Windows Server 2022",
                      components=frozenset({"dotnet-8", "aspnetcore-8"}), database="opensearch",
                      nats_running=True, ports_reachable=True)


def register_agents(log: LogWriter, agents: Sequence[Agent]) -> None:
    log.append(SETTINGS_STREAM, [SettingChanged(key="delayed-start-seconds", value=str(DELAYED_START_SECONDS))],
               actor=OPERATOR)
    for agent in agents:
        log.append(agent_stream_id(agent.name), [
            AgentRegistered(name=agent.name, address=agent.address, cluster=agent.cluster, version=agent.version,
                            dataminer_id=agent.dataminer_id, failover_partner=agent.partner,
                            failover_role=agent.role),
            AgentFactsReported(facts=facts(agent)),
        ], actor=OPERATOR)


def upload_package(log: LogWriter, number: int) -> tuple[str, str]:
    """Upload the package of rollout ``number``; return its SHA-256 and version."""
    version = f"10.5.0.0-{15000 + number}"
    manifest = PackageManifest(version="10.5.0.0", build=15000 + number, kind=PackageKind.FULL,
                               description=f"release {number}")
    sha256 = hashlib.sha256(f"package {number}".encode()).hexdigest()
    log.append(package_stream_id(sha256), [PackageUploaded(sha256=sha256, file_name=package_file_name(manifest),
                                                           size=1_400_000_000 + number, manifest=manifest)],
               actor=OPERATOR)
    return sha256, version


def upgrade_appends(log: LogWriter, planned: PlannedAgent, rollout: RolloutPlanned, *, retried: bool,
                    fails: bool) -> list[Append]:
    """Every append one agent's upgrade makes after it was scheduled, in order."""
    stream = upgrade_stream_id(planned.upgrade_id)
    agent_stream = agent_stream_id(planned.name)
    target = rollout.package_version
    appends: list[Append] = []

    def key(step: Step, attempt: int) -> str:
        return f"{planned.upgrade_id}:{step.value}:{attempt}"

    def on(*new: Event) -> None:
        appends.extend((stream, [e]) for e in new)

    for step in planned.plan.steps:
        if step is Step.START and planned.plan.delayed_start_seconds:
            on(StepDelayed(step=step, due_at=log.now + timedelta(seconds=planned.plan.delayed_start_seconds),
                           reason="delayed start"))
        failures = RETRY_BUDGET + 1 if fails and step is Step.INSTALL else int(retried and step is Step.INSTALL)
        for attempt in range(1, failures + 1):
            on(StepStarted(step=step, attempt=attempt, idempotency_key=key(step, attempt)))
            on(*(InstallPhaseReported(phase=phase, phase_index=i, phase_count=len(INSTALL_PHASES))
                 for i, phase in enumerate(INSTALL_PHASES[:3])))
            on(StepFailed(step=step, attempt=attempt, error=f"installer exited with code {1600 + attempt}"))
            if attempt > RETRY_BUDGET:
                on(AgentUpgradeFailed(step=step, reason=f"step install failed after {attempt} attempts"))
                return appends
            on(StepDelayed(step=step, due_at=log.now + timedelta(seconds=BACKOFF_SECONDS * 2 ** (attempt - 1)),
                           reason="retry backoff"))
        attempt = failures + 1
        on(StepStarted(step=step, attempt=attempt, idempotency_key=key(step, attempt)))
        if step is Step.INSTALL:
            on(*(InstallPhaseReported(phase=phase, phase_index=i, phase_count=len(INSTALL_PHASES))
                 for i, phase in enumerate(INSTALL_PHASES)))
            on(StepSucceeded(step=step, attempt=attempt, version_after=target))
            appends.append((agent_stream, [AgentVersionChanged(version=target, previous_version=planned.current_version,
                                                               upgrade_id=str(planned.upgrade_id))]))
        else:
            on(StepSucceeded(step=step, attempt=attempt))
    on(AgentUpgradeCompleted(version_after=target, manual_start_needed=False))
    return appends


def run_rollout(log: LogWriter, agents: Sequence[Agent], number: int, rng: random.Random,
                stats: HistoryStats, check: bool) -> None:
    """One whole-cluster rollout, its agents interleaved ``MAX_CONCURRENT`` at a time as the runner drives them."""
    sha256, version = upload_package(log, number)
    rollout_id = log.new_id()
    delayed = number % 2 == 0
    options = UpgradeOptions(delayed_start=delayed)
    plan = AgentUpgradePlan(options=options, delayed_start_seconds=DELAYED_START_SECONDS if delayed else 0)
    planned = RolloutPlanned(
        rollout_id=rollout_id, package_sha256=sha256, package_version=version, options=options, upload_only=False,
        failover_policy=FailoverPolicy.SIMULTANEOUS, max_concurrent=MAX_CONCURRENT, max_errors=0,
        agents=tuple(PlannedAgent(name=a.name, address=a.address, cluster=a.cluster, current_version=a.version,
                                  upgrade_id=log.new_id(), plan=plan, failover_role=a.role) for a in agents),
    )
    rollout_stream = rollout_stream_id(rollout_id)
    failing = len(agents) - 1 if number % FAILED_ROLLOUT_EVERY == FAILED_ROLLOUT_EVERY - 1 else None
    written: list[Append] = []

    def append(stream_id: str, new: list[Event], actor: str = ENGINE_ACTOR) -> None:
        log.append(stream_id, new, actor=actor, correlation_id=rollout_id)
        if check:
            written.append((stream_id, new))

    append(rollout_stream, [planned], OPERATOR)
    append(CLAIMS_STREAM, [RolloutClaimed(rollout_id=rollout_id, clusters=(agents[0].cluster,),
                                          agents=tuple(a.name for a in agents))], OPERATOR)
    append(package_stream_id(sha256), [PackageUsed(rollout_id=rollout_id)], OPERATOR)
    append(rollout_stream, [RolloutStarted()])
    for planned_agent in planned.agents:
        append(upgrade_stream_id(planned_agent.upgrade_id), [AgentUpgradeScheduled(
            upgrade_id=planned_agent.upgrade_id, rollout_id=rollout_id, agent=planned_agent.name,
            package_sha256=sha256, target_version=version, plan=planned_agent.plan)])
    for start in range(0, len(planned.agents), MAX_CONCURRENT):
        wave = []
        for index in range(start, min(start + MAX_CONCURRENT, len(planned.agents))):
            retried = rng.random() < RETRIED_INSTALL_SHARE
            stats.retried_installs += retried
            wave.append(upgrade_appends(log, planned.agents[index], planned, retried=retried,
                                        fails=index == failing))
        for step_appends in zip_longest(*wave):
            for pending in step_appends:
                if pending is not None:
                    append(*pending)
    stats.agent_upgrades += len(agents)
    if failing is None:
        append(rollout_stream, [RolloutCompleted(completed=len(agents), cancelled=0)])
    else:
        failed = planned.agents[failing]
        append(rollout_stream, [RolloutFailed(reason="error budget exceeded: 1 agents failed, --max-errors is 0")])
        append(rollout_stream, [RolloutCancelled(reason="abandoned after the install kept failing")], OPERATOR)
        append(upgrade_stream_id(failed.upgrade_id), [AgentUpgradeCancelled(reason="the rollout was cancelled")])
        stats.failed_rollouts += 1
    append(CLAIMS_STREAM, [RolloutReleased(rollout_id=rollout_id)])
    for index, agent in enumerate(agents):
        if index != failing:
            agent.version = version
    stats.rollouts += 1
    if check:
        check_rollout(written, planned, failing, stats)


def check_rollout(written: Sequence[Append], planned: RolloutPlanned, failing: int | None,
                  stats: HistoryStats) -> None:
    """Fail fast unless the engine's own folds accept the generated streams and end where expected."""
    streams: dict[str, list[Event]] = {}
    for stream_id, new in written:
        streams.setdefault(stream_id, []).extend(new)
    rollout = Rollout.fold(streams[rollout_stream_id(planned.rollout_id)])
    expected = RolloutState.COMPLETED if failing is None else RolloutState.CANCELLED
    if rollout.state is not expected:
        raise RuntimeError(f"generated rollout ends {rollout.state}, expected {expected}")
    stats.by_rollout_state[rollout.state.value] = stats.by_rollout_state.get(rollout.state.value, 0) + 1
    for index, agent in enumerate(planned.agents):
        upgrade = AgentUpgrade.fold(streams[upgrade_stream_id(agent.upgrade_id)])
        wanted = UpgradeState.COMPLETED if index != failing else UpgradeState.CANCELLED
        if upgrade.state != wanted:
            raise RuntimeError(f"generated upgrade of {agent.name} ends {upgrade.state}, expected {wanted}")
        stats.checked_streams += 1


def generate(url: str, event_count: int) -> tuple[Measurement, HistoryStats]:
    """Migrate a fresh store at ``url`` and fill it with ``event_count`` events of rollouts."""
    engine = create_db_engine(url)
    try:
        migrate(engine)
        rng = random.Random(SEED)
        log = LogWriter(engine, default_codec(), event_count, rng)
        stats = HistoryStats()
        start = time.perf_counter()
        agents = make_agents()
        register_agents(log, agents)
        number = 0
        while not log.full:
            cluster = number % CLUSTERS
            check = number < 2 or number == FAILED_ROLLOUT_EVERY - 1
            run_rollout(log, agents[cluster * ROLLOUT_SIZE:(cluster + 1) * ROLLOUT_SIZE], number, rng, stats, check)
            log.advance(600)
            number += 1
        log.flush()
        return Measurement(log.head_position, time.perf_counter() - start), stats
    finally:
        engine.dispose()


# -- the measurements of this store ------------------------------------------------------------


@dataclass(frozen=True)
class RebuildResult:
    events: int
    seconds: float
    applied: dict[str, int]
    rows: dict[str, int]
    rss_before_mib: float
    peak_rss_mib: float
    vm_hwm_mib: float | None


def rebuild_in_child(url: str) -> RebuildResult:
    """Run the rebuild in a fresh process of its own and take its figures."""
    command = [sys.executable, "-c", LAUNCHER, sys.executable, "-m", "bench.replay", "--rebuild-url", url]
    done = subprocess.run(command, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, text=True, check=True)
    return RebuildResult(**json.loads(done.stdout))


def run_rebuild_child(url: str) -> None:
    """The child process: rebuild every projection from position 0 and print its figures as JSON."""
    engine = create_db_engine(url)
    migrate(engine)  # not timed: the read-model tables as this checkout's projections expect them
    clock = SystemClock()
    store = SqlEventStore(engine, default_codec(), clock)
    runner = ProjectionRunner(engine, store, clock, all_projections(), batch_size=REBUILD_BATCH)
    rss_before = peak_rss_mib()
    applied: dict[str, int] = {}

    def rebuild() -> int:
        applied.update(runner.rebuild(workers=os.cpu_count() or 1))
        return store.head_position()

    result = measure(rebuild)
    with engine.connect() as conn:
        rows = {spec.name: int(conn.execute(sa.select(sa.func.count()).select_from(sql_table(spec))).scalar_one())
                for projection in runner.projections.values() for spec in projection.tables}
    engine.dispose()
    print(json.dumps({"events": result.count, "seconds": result.seconds, "applied": applied, "rows": rows,
                      "rss_before_mib": rss_before, "peak_rss_mib": max(peak_rss_mib(), peak_rss_mib(children=True)),
                      "vm_hwm_mib": vm_hwm_mib()}))


def export_all(url: str, path: Path, export_format: ExportFormat) -> int:
    """Export every event, as ``dma-upgrade audit export`` does; return how many were exported."""
    engine = create_db_engine(url)
    try:
        store = SqlEventStore(engine, default_codec(), SystemClock())
        with atomic_output(path) as stream:
            summary = export_records(select_records(store, Selection()), stream, export_format)
        return summary.exported
    finally:
        engine.dispose()


def raw_scan(url: str) -> int:
    """Every row with all its columns, with a Core select paged by position."""
    engine = create_db_engine(url)
    position = 0
    count = 0
    try:
        with engine.connect() as conn:
            while True:
                query = (sa.select(*events_table.c).where(events_table.c.position > position)
                         .order_by(events_table.c.position).limit(SCAN_PAGE))
                rows = conn.execute(query).all()
                if not rows:
                    return count
                count += len(rows)
                position = rows[-1][0]
    finally:
        engine.dispose()


def verify_log(url: str) -> int:
    engine = create_db_engine(url)
    try:
        verdict = verify_chain(SqlEventStore(engine, default_codec(), SystemClock()).read_records(page_size=SCAN_PAGE))
    finally:
        engine.dispose()
    if not verdict.ok:
        raise RuntimeError(f"hash chain broken at {verdict.broken_at}: {verdict.reason}")
    return verdict.verified


# -- eventsourcing -----------------------------------------------------------------------------


class EsUpgrade(Aggregate):
    """An agent upgrade as an ``eventsourcing`` aggregate, one decorated method per event type."""

    @event("AgentUpgradeScheduled")
    def __init__(self, rollout_id: str, agent: str, package_sha256: str, target_version: str,
                 plan: dict[str, Any]) -> None:
        self.agent = agent
        self.target_version = target_version
        self.step: str | None = None
        self.attempts: dict[str, int] = {}
        self.phase: str | None = None
        self.state = "Scheduled"

    @event("StepStarted")
    def step_started(self, step: str, attempt: int, idempotency_key: str) -> None:
        self.step = step
        self.attempts[step] = attempt

    @event("StepSucceeded")
    def step_succeeded(self, step: str, attempt: int, version_after: str | None) -> None:
        self.step = None
        self.phase = None

    @event("StepFailed")
    def step_failed(self, step: str, attempt: int, error: str) -> None:
        self.step = None
        self.error = error

    @event("StepDelayed")
    def step_delayed(self, step: str, due_at: str, reason: str) -> None:
        self.waiting_until = due_at

    @event("InstallPhaseReported")
    def install_phase_reported(self, phase: str, phase_index: int, phase_count: int) -> None:
        self.phase = phase

    @event("AgentUpgradeCompleted")
    def completed(self, version_after: str | None, manual_start_needed: bool) -> None:
        self.state = "Completed"


def es_aggregate(rng: random.Random, number: int) -> EsUpgrade:
    """25 events: scheduled, upload, stop SNMP, an install attempt failed and delayed, the install retried
    with 12 phases, start, completed."""
    upgrade_id = UUID(int=rng.getrandbits(128), version=4)
    version = "10.5.0.0-15000"
    upgrade = EsUpgrade(rollout_id=str(UUID(int=rng.getrandbits(128), version=4)), agent=f"dma-{number:06d}",
                        package_sha256=hashlib.sha256(b"package").hexdigest(), target_version=version,
                        plan=AgentUpgradePlan().model_dump(mode="json"))
    due = (START_TIME + timedelta(seconds=number)).isoformat()

    def step(name: str, attempt: int = 1, version_after: str | None = None) -> None:
        upgrade.step_started(name, attempt, f"{upgrade_id}:{name}:{attempt}")
        if name == "install":
            for index, phase in enumerate(INSTALL_PHASES):
                upgrade.install_phase_reported(phase, index, len(INSTALL_PHASES))
        upgrade.step_succeeded(name, attempt, version_after)

    step("upload")
    step("stop_snmp")
    upgrade.step_started("install", 1, f"{upgrade_id}:install:1")
    upgrade.step_failed("install", 1, "installer exited with code 1601")
    upgrade.step_delayed("install", due, "retry backoff")
    step("install", 2, version)
    step("start")
    upgrade.completed(version, False)
    return upgrade


def eventsourcing_env(path: Path) -> dict[str, str]:
    return {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(path)}


def store_eventsourcing(path: Path, aggregates: int) -> tuple[Measurement, list[UUID]]:
    """Store ``aggregates`` upgrades of 25 events (setup); return the time it took and their ids."""
    app: Application[UUID] = Application(env=eventsourcing_env(path))
    rng = random.Random(SEED)
    ids: list[UUID] = []
    start = time.perf_counter()
    try:
        for first in range(0, aggregates, ES_SAVE_BATCH):
            batch = [es_aggregate(rng, n) for n in range(first, min(first + ES_SAVE_BATCH, aggregates))]
            if len(batch[0].pending_events) != ES_EVENTS_PER_AGGREGATE:
                raise RuntimeError(f"an eventsourcing aggregate has {len(batch[0].pending_events)} events")
            app.save(*batch)
            ids.extend(aggregate.id for aggregate in batch)
    finally:
        app.close()
    return Measurement(aggregates * ES_EVENTS_PER_AGGREGATE, time.perf_counter() - start), ids


def replay_eventsourcing(path: Path, ids: Sequence[UUID]) -> int:
    """Rebuild every aggregate from its stored events; return how many events were applied."""
    app: Application[UUID] = Application(env=eventsourcing_env(path))
    try:
        replayed = 0
        for aggregate_id in ids:
            aggregate: EsUpgrade = app.repository.get(aggregate_id)
            if aggregate.state != "Completed":
                raise RuntimeError(f"aggregate {aggregate_id} replayed to {aggregate.state}")
            replayed += aggregate.version
        return replayed
    finally:
        app.close()


# -- running and reporting ---------------------------------------------------------------------


def timed(what: str, action: Callable[[], int]) -> Measurement:
    progress(f"{what} ...")
    result = measure(action)
    progress(f"{what}: {result.count:,} events in {result.seconds:.1f} s = {result.rate:,.0f} events/s")
    return result


def verdict(ok: bool) -> str:
    return "meets" if ok else "MISSES"


def profile_rebuild(url: str) -> None:
    """cProfile one full rebuild in this process and print the top costs."""
    engine = create_db_engine(url)
    migrate(engine)
    clock = SystemClock()
    store = SqlEventStore(engine, default_codec(), clock)
    runner = ProjectionRunner(engine, store, clock, all_projections(), batch_size=REBUILD_BATCH)
    profiler = cProfile.Profile()
    start = time.perf_counter()
    profiler.enable()
    applied = runner.rebuild()
    profiler.disable()
    seconds = time.perf_counter() - start
    engine.dispose()
    head = max(applied.values())
    print(f"\nprofiled rebuild of {head:,} events ({applied}): {seconds:.1f} s under cProfile "
          f"= {head / seconds:,.0f} events/s")
    for order in ("tottime", "cumulative"):
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats(order).print_stats(35)
        print(f"\n-- top 35 by {order} --")
        print(out.getvalue().split("\n", 6)[-1] if order == "tottime" else out.getvalue())


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=1_000_000, help="events to generate and replay")
    parser.add_argument("--sqlite-path", type=Path,
                        help="the SQLite file to generate (must not exist; kept); default a temporary file")
    parser.add_argument("--profile", action="store_true",
                        help="only generate, then cProfile one rebuild in this process and print the top costs")
    parser.add_argument("--rebuild-url", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.rebuild_url:
        run_rebuild_child(args.rebuild_url)
        return
    if args.events < ES_EVENTS_PER_AGGREGATE:
        raise SystemExit(f"--events must be at least {ES_EVENTS_PER_AGGREGATE}")
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="dma_upgrade_replay_") as directory:
        workdir = Path(directory)
        db_path = args.sqlite_path.resolve() if args.sqlite_path else workdir / "replay.db"
        if db_path.exists():
            raise SystemExit(f"{db_path} exists: remove it or choose another --sqlite-path")
        url = f"sqlite:///{db_path}"
        progress(f"generating {args.events:,} events of rollouts into {db_path} ...")
        generated, stats = generate(url, args.events)
        progress(f"generated {generated.count:,} events in {generated.seconds:.1f} s = {generated.rate:,.0f} "
                 f"events/s: {stats}")
        if args.profile:
            profile_rebuild(url)
            return
        verified = timed("verify the hash chain (a check, not a measurement)", lambda: verify_log(url))
        gc.collect()
        rebuild = rebuild_in_child(url)
        rebuilt = Measurement(rebuild.events, rebuild.seconds)
        progress(f"rebuild: {rebuild.events:,} events in {rebuild.seconds:.1f} s = {rebuilt.rate:,.0f} events/s; "
                 f"peak RSS {rebuild.peak_rss_mib:.1f} MiB; rows {rebuild.rows}")
        jsonl = timed("audit export, jsonl", lambda: export_all(url, workdir / "audit.jsonl", ExportFormat.JSONL))
        csv = timed("audit export, csv", lambda: export_all(url, workdir / "audit.csv", ExportFormat.CSV))
        export_sizes = {name: (workdir / name).stat().st_size for name in ("audit.jsonl", "audit.csv")}
        scan = timed(f"raw Core scan in pages of {SCAN_PAGE}", lambda: raw_scan(url))
        aggregates = generated.count // ES_EVENTS_PER_AGGREGATE
        es_path = workdir / "eventsourcing.db"
        progress(f"storing {aggregates:,} eventsourcing aggregates of {ES_EVENTS_PER_AGGREGATE} events ...")
        es_stored, ids = store_eventsourcing(es_path, aggregates)
        progress(f"stored {es_stored.count:,} eventsourcing events in {es_stored.seconds:.1f} s")
        es_replay = timed("eventsourcing repository.get of every aggregate", lambda: replay_eventsourcing(es_path, ids))
        db_size = sum(p.stat().st_size for p in db_path.parent.glob(db_path.name + "*"))
        if args.sqlite_path is None:
            db_path.unlink()
        load_end = os.getloadavg()
        report(args, generated, stats, verified, rebuild, jsonl, csv, scan, es_stored, es_replay,
               export_sizes, db_size, load_start, load_end)


def report(args: argparse.Namespace, generated: Measurement, stats: HistoryStats, verified: Measurement,
           rebuild: RebuildResult, jsonl: Measurement, csv: Measurement, scan: Measurement,
           es_stored: Measurement, es_replay: Measurement, export_sizes: dict[str, int], db_size: int,
           load_start: tuple[float, float, float], load_end: tuple[float, float, float]) -> None:
    rebuilt = Measurement(rebuild.events, rebuild.seconds)
    projections = len(rebuild.applied)
    rows = [
        ["setup: generate + bulk insert (hash-chained, executemany)", f"{generated.count:,}",
         f"{generated.seconds:.1f}", f"{generated.rate:,.0f}", "", ""],
        ["setup: eventsourcing store of the same count", f"{es_stored.count:,}", f"{es_stored.seconds:.1f}",
         f"{es_stored.rate:,.0f}", "", ""],
        ["check: verify_chain over read_records", f"{verified.count:,}", f"{verified.seconds:.1f}",
         f"{verified.rate:,.0f}", "", ""],
        [f"(a) ProjectionRunner.rebuild(), {projections} projections, own process", f"{rebuilt.count:,}",
         f"{rebuilt.seconds:.1f}", f"{rebuilt.rate:,.0f}", f">= {REBUILD_TARGET:,.0f}/s",
         verdict(rebuilt.rate >= REBUILD_TARGET)],
        ["(b) audit export, jsonl", f"{jsonl.count:,}", f"{jsonl.seconds:.1f}", f"{jsonl.rate:,.0f}", "", ""],
        ["(b) audit export, csv", f"{csv.count:,}", f"{csv.seconds:.1f}", f"{csv.rate:,.0f}", "", ""],
        [f"(c) raw Core scan, pages of {SCAN_PAGE}", f"{scan.count:,}", f"{scan.seconds:.1f}",
         f"{scan.rate:,.0f}", "", ""],
        [f"(d) eventsourcing repository.get x {es_replay.count // ES_EVENTS_PER_AGGREGATE:,}", f"{es_replay.count:,}",
         f"{es_replay.seconds:.1f}", f"{es_replay.rate:,.0f}", "", ""],
        ["rebuild / raw scan", "", "", f"{ratio(rebuilt.rate, scan.rate):.3f}x", "", ""],
        ["rebuild / eventsourcing replay", "", "", f"{ratio(rebuilt.rate, es_replay.rate):.2f}x",
         f">= {ES_RATIO_TARGET:.1f}x", verdict(ratio(rebuilt.rate, es_replay.rate) >= ES_RATIO_TARGET)],
        ["rebuild event-deliveries (events x projections) / s", f"{sum(rebuild.applied.values()):,}",
         "", f"{sum(rebuild.applied.values()) / rebuild.seconds:,.0f}", "", ""],
        ["audit export jsonl / raw scan", "", "", f"{ratio(jsonl.rate, scan.rate):.3f}x", "", ""],
    ]
    print_table(f"Replay of {generated.count:,} events on SQLite ({db_size / 2**20:,.0f} MiB with WAL); "
                f"load average {load_start[0]:.2f} at the start, {load_end[0]:.2f} at the end, "
                f"on {os.cpu_count()} cores",
                ["measure", "events", "seconds", "events/s", "target", "verdict"], rows)
    vm_hwm = "n/a" if rebuild.vm_hwm_mib is None else f"{rebuild.vm_hwm_mib:.1f} MiB"
    print(f"\npeak RSS (ru_maxrss) of the rebuild process: {rebuild.peak_rss_mib:.1f} MiB "
          f"(target < {RSS_TARGET_MIB:.0f} MiB: {verdict(rebuild.peak_rss_mib < RSS_TARGET_MIB)}); "
          f"{rebuild.rss_before_mib:.1f} MiB before rebuilding; VmHWM {vm_hwm}")
    print(f"peak RSS (ru_maxrss) of this benchmark process (generation, export, scan, eventsourcing): "
          f"{peak_rss_mib():.1f} MiB")
    print(f"history: {stats.rollouts:,} rollouts of {ROLLOUT_SIZE} agents over {CLUSTERS} clusters "
          f"({stats.failed_rollouts} failed then cancelled), {stats.agent_upgrades:,} agent upgrades, "
          f"{stats.retried_installs:,} installs retried after a failed attempt; the last rollout is cut at "
          f"{args.events:,} events; {stats.checked_streams} generated upgrade streams folded by the engine "
          f"({stats.by_rollout_state})")
    print(f"rebuild applied per projection: {rebuild.applied}")
    print(f"read-model rows after the rebuild: {rebuild.rows}")
    print("export sizes: " + ", ".join(f"{name} {size / 2**20:,.0f} MiB" for name, size in export_sizes.items()))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
