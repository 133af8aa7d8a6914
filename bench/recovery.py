"""Benchmark of crash recovery: resuming interrupted agent upgrades, and re-arming pending timers.

On fresh SQLite files (in a temporary directory):

- **Resume.** ``--upgrades`` agent upgrades, in rollouts of ``--agents-per-rollout`` agents (every one
  in Running state: ``RolloutStarted`` recorded), whose histories stop at seeded random points:
  Scheduled; upload in flight; upload failed and backing off (a ``StepDelayed`` past due); Uploaded;
  SNMPStopped; install in flight with some ``InstallPhaseReported``; installed with the delayed start
  past due (with or without a switchover after it); started with the switchover next; switchover in
  flight; start in flight. For half of the steps in flight the agent had already
  applied the step before the engine died. Histories are built with the ``AgentUpgrade`` aggregate's
  own decisions and written in bulk (``build_records``: stream versions and hash chain as an append
  writes them; the chain is verified before the run). Timed from "engine start" (an ``EngineProcess``
  on a new database engine, serving in a thread) until every upgrade had its first gateway call
  (``step_status`` or ``perform``), noted by a gateway wrapper around a ``SimulatedAgentGateway``
  with zero step latency; then until every rollout completed. The waiter returns at once (as in
  ``bench/rollout.py``): the requested waits are counted, not waited.
- **Re-arm.** ``--timers`` rollouts planned with a ``start_at`` in the future (one agent each),
  written in bulk. Timed from "engine start" (a new database engine and an ``EngineProcess`` with a
  ``BackgroundScheduler`` started paused) until its first ``tick`` had added one APScheduler ``date``
  job per pending start (``misfire_grace_time=None``), and until that tick ended; then the next tick
  (every timer armed already: what each poll costs from then on). Three ways, in this order, on the
  same file: the ``ProjectionIndex`` that ``serve`` uses with the projections caught up from position
  0 (a new or rebuilt read side), the same with the projections current (a restart), and the
  ``FoldedIndex`` that folds every rollout stream (the baseline).

    python bench/recovery.py [--upgrades 1000] [--timers 10000] [--agents-per-rollout 50]
                             [--seed 7] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import io
import os
import pstats
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any
from uuid import UUID

if __package__ in (None, ""):  # run as a script: make the project root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sqlalchemy as sa
from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy.engine import Engine

from bench._common import print_table, progress, ratio
from dma_upgrade.adapters.agents.simulated_gateway import (
    DEFAULT_VERSION,
    SimulatedAgent,
    SimulatedAgentGateway,
    modern_facts,
)
from dma_upgrade.adapters.bootstrap import App, bootstrap
from dma_upgrade.adapters.clock import SystemClock
from dma_upgrade.adapters.runtime.engine_process import FoldedIndex, ProjectionIndex, RolloutIndex
from dma_upgrade.adapters.settings import Settings
from dma_upgrade.adapters.sql.database import create_db_engine, migrate
from dma_upgrade.adapters.sql.event_store import SqlEventStore
from dma_upgrade.adapters.sql.projection_runner import ProjectionRunner
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
from dma_upgrade.engine.packages import INSTALL_PHASES, PackageKind, PackageManifest
from dma_upgrade.engine.ports import (
    AgentAddress,
    AgentGateway,
    AgentIdentity,
    PackageRef,
    PhaseReporter,
    StepOutcome,
    StepStatus,
)
from dma_upgrade.engine.rollout import RolloutState
from dma_upgrade.engine.rollout_events import (
    CLAIMS_STREAM,
    FailoverPolicy,
    PackageUploaded,
    PlannedAgent,
    RolloutClaimed,
    RolloutPlanned,
    RolloutStarted,
    package_stream_id,
    rollout_stream_id,
)
from dma_upgrade.engine.upgrade_events import AgentUpgradePlan, AgentUpgradeScheduled, Step, UpgradeOptions
from dma_upgrade.engine.versions import parse_version
from dma_upgrade.projections.progress import ProgressProjection
from dma_upgrade.projections.timers import PendingTimersProjection

ACTOR = "engine"
OLD_VERSION = DEFAULT_VERSION
TARGET_VERSION = "10.4.9.0-14794"
PACKAGE_SHA256 = hashlib.sha256(f"DataMiner {TARGET_VERSION} Full Upgrade".encode()).hexdigest()


def rollout_package(index: int) -> str:
    """The SHA-256 of rollout ``index``'s package: a package is completed at its first install, so each rollout
    under way has its own (the same version, built once per cluster)."""
    return hashlib.sha256(f"DataMiner {TARGET_VERSION} Full Upgrade for cluster {index}".encode()).hexdigest()
DELAYED_START_SECONDS = 60
TARGET_SECONDS = 5.0
TARGET_LABEL = f"< {TARGET_SECONDS:g} s on a 2-core machine"
ROWS_PER_BULK_INSERT = 8000
COMPLETION_TIMEOUT_SECONDS = 600.0
OPTIONS = UpgradeOptions()
"""The System Center defaults: Stop SNMP, Delayed Start and Auto Start on, no reboot."""


class Cut(StrEnum):
    """Where an upgrade's history stops (the engine died right after the last event)."""

    SCHEDULED = "Scheduled"
    UPLOAD_IN_FLIGHT = "upload in flight"
    UPLOAD_BACKOFF = "upload failed, backoff past due"
    UPLOADED = "Uploaded"
    SNMP_STOPPED = "SNMPStopped"
    INSTALL_IN_FLIGHT = "install in flight (phases reported)"
    SWITCHING_START_DELAYED = "installed, delayed start past due, switchover after it"
    STARTED = "started on the new version, switchover next"
    SWITCH_OVER_IN_FLIGHT = "switchover in flight"
    START_DELAYED = "installed, delayed start past due"
    START_IN_FLIGHT = "start in flight"


CUT_WEIGHTS: dict[Cut, int] = {
    Cut.SCHEDULED: 15, Cut.UPLOAD_IN_FLIGHT: 8, Cut.UPLOAD_BACKOFF: 5, Cut.UPLOADED: 10, Cut.SNMP_STOPPED: 10,
    Cut.INSTALL_IN_FLIGHT: 20, Cut.SWITCHING_START_DELAYED: 7, Cut.STARTED: 5, Cut.SWITCH_OVER_IN_FLIGHT: 5,
    Cut.START_DELAYED: 10, Cut.START_IN_FLIGHT: 5,
}
SWITCHING_CUTS = (Cut.SWITCHING_START_DELAYED, Cut.STARTED, Cut.SWITCH_OVER_IN_FLIGHT)
"""Cuts only a switchover plan has (the switch-over comes once the agent runs the new version: after Start)."""
IN_FLIGHT_CUTS = (Cut.UPLOAD_IN_FLIGHT, Cut.INSTALL_IN_FLIGHT, Cut.SWITCH_OVER_IN_FLIGHT, Cut.START_IN_FLIGHT)


# -- writing a history in bulk -----------------------------------------------------------------


class BulkLog:
    """Events turned into stored records as appends would write them, then inserted in bulk."""

    def __init__(self, codec: EventCodec, ids: Callable[[], UUID], recorded_at: datetime) -> None:
        self._codec = codec
        self._ids = ids
        self._recorded_at = recorded_at
        self._versions: Counter[str] = Counter()
        self._head_position = 0
        self._head_hash = GENESIS_HASH
        self.records: list[StoredRecord] = []

    def append(self, stream_id: str, events: Iterable[Event], correlation_id: UUID | None = None) -> None:
        metadata = EventMetadata(actor=ACTOR, correlation_id=correlation_id)
        new = [NewEvent(event_id=self._ids(), event=e, metadata=metadata) for e in events]
        if not new:
            return
        records = build_records(self._codec, new, stream_id=stream_id, stream_version=self._versions[stream_id],
                                head_position=self._head_position, head_hash=self._head_hash,
                                recorded_at=self._recorded_at)
        self._versions[stream_id] += len(records)
        self._head_position, self._head_hash = records[-1].position, records[-1].hash
        self.records.extend(records)

    def insert_into(self, engine: Engine) -> int:
        for start in range(0, len(self.records), ROWS_PER_BULK_INSERT):
            with engine.begin() as conn:
                conn.execute(events_table.insert(),
                             [record_row(r) for r in self.records[start:start + ROWS_PER_BULK_INSERT]])
        return len(self.records)


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


def seeded_ids(rng: random.Random) -> Callable[[], UUID]:
    return lambda: UUID(int=rng.getrandbits(128), version=4)


def fresh_engine(url: str) -> Engine:
    engine = create_db_engine(url)
    migrate(engine)
    return engine


def package_manifest() -> PackageManifest:
    return PackageManifest.for_version(parse_version(TARGET_VERSION), PackageKind.FULL)


# -- part 1: interrupted upgrades --------------------------------------------------------------


@dataclass
class Interrupted:
    """One agent upgrade as the engine left it."""

    agent: PlannedAgent
    cut: Cut
    events: list[Event]
    installed: bool
    """Whether the history has the install's success (the agent runs the new version)."""
    applied_in_flight: tuple[Step, str] | None = None
    """The step in flight and its key, when the agent had applied it before the engine died."""


def interrupted_history(agent: PlannedAgent, rollout: RolloutPlanned, cut: Cut, rng: random.Random,
                        now: datetime) -> Interrupted:
    """The events of one upgrade up to ``cut``, decided by the ``AgentUpgrade`` aggregate itself."""
    upgrade = AgentUpgrade()
    events: list[Event] = []

    def record(decided: list[Event]) -> None:
        for event in decided:
            upgrade.apply(event)
        events.extend(decided)

    def run(step: Step) -> None:
        record(upgrade.start_step(step))
        record(upgrade.finish_step(step, TARGET_VERSION if step is Step.INSTALL else None))

    past_due = now - timedelta(minutes=rng.uniform(1, 60))
    record(upgrade.schedule(AgentUpgradeScheduled(
        upgrade_id=agent.upgrade_id, rollout_id=rollout.rollout_id, agent=agent.name,
        package_sha256=rollout.package_sha256,
        target_version=TARGET_VERSION, plan=agent.plan)))
    if cut is Cut.SCHEDULED:
        pass
    elif cut is Cut.UPLOAD_IN_FLIGHT:
        record(upgrade.start_step(Step.UPLOAD))
    elif cut is Cut.UPLOAD_BACKOFF:
        record(upgrade.start_step(Step.UPLOAD))
        record(upgrade.fail_attempt(Step.UPLOAD, "the agent did not answer"))
        record(upgrade.delay_step(Step.UPLOAD, past_due, "retry backoff"))
    else:
        run(Step.UPLOAD)
        if cut is not Cut.UPLOADED:
            run(Step.STOP_SNMP)
        if cut is Cut.INSTALL_IN_FLIGHT:
            record(upgrade.start_step(Step.INSTALL))
            for index in range(rng.randrange(len(INSTALL_PHASES))):
                record(upgrade.report_phase(INSTALL_PHASES[index], index, len(INSTALL_PHASES)))
        elif cut not in (Cut.UPLOADED, Cut.SNMP_STOPPED):
            run(Step.INSTALL)
            record(upgrade.delay_step(Step.START, past_due, "delayed start"))
            if cut in (Cut.STARTED, Cut.SWITCH_OVER_IN_FLIGHT):
                run(Step.START)
            if cut is Cut.SWITCH_OVER_IN_FLIGHT:
                record(upgrade.start_step(Step.SWITCH_OVER))
            if cut is Cut.START_IN_FLIGHT:
                record(upgrade.start_step(Step.START))
    applied = None
    if cut in IN_FLIGHT_CUTS and rng.random() < 0.5:
        step = upgrade.step_in_progress
        assert step is not None
        applied = (step, upgrade.idempotency_key(step, upgrade.attempts[step]))
    return Interrupted(agent=agent, cut=cut, events=events, installed=Step.INSTALL in upgrade.done_steps,
                       applied_in_flight=applied)


@dataclass
class ResumeWorld:
    """What the resume benchmark set up: the upgrades and the simulated agents behind them."""

    rollouts: list[RolloutPlanned]
    upgrades: list[Interrupted]
    gateway: SimulatedAgentGateway
    events: int
    chain_verified: int


def plan_rollout(rng: random.Random, ids: Callable[[], UUID], index: int, agent_count: int,
                 first_agent: int, cuts: list[Cut]) -> RolloutPlanned:
    agents = []
    for offset, cut in enumerate(cuts):
        number = first_agent + offset
        switch_over = cut in SWITCHING_CUTS or (cut not in (Cut.START_DELAYED, Cut.START_IN_FLIGHT)
                                                and rng.random() < 0.2)
        agents.append(PlannedAgent(
            name=f"dma-{number:05d}", address=f"10.{number // 65536}.{number // 256 % 256}.{number % 256}",
            cluster=f"cluster-{index:03d}", current_version=OLD_VERSION, upgrade_id=ids(),
            plan=AgentUpgradePlan(options=OPTIONS, switch_over=switch_over,
                                  delayed_start_seconds=DELAYED_START_SECONDS),
            failover_role=FailoverRole.BACKUP if switch_over else None))
    return RolloutPlanned(
        rollout_id=ids(), package_sha256=rollout_package(index), package_version=TARGET_VERSION, options=OPTIONS,
        upload_only=False, failover_policy=FailoverPolicy.BACKUP_FIRST, agents=tuple(agents),
        max_concurrent=agent_count, max_errors=agent_count)


def build_resume_world(engine: Engine, upgrade_count: int, per_rollout: int, seed: int) -> ResumeWorld:
    rng = random.Random(seed)
    ids = seeded_ids(rng)
    now = SystemClock().now()
    log = BulkLog(default_codec(), ids, recorded_at=now - timedelta(hours=2))
    manifest = package_manifest()
    cuts = rng.choices(list(CUT_WEIGHTS), weights=list(CUT_WEIGHTS.values()), k=upgrade_count)
    rollouts: list[RolloutPlanned] = []
    upgrades: list[Interrupted] = []
    for index, start in enumerate(range(0, upgrade_count, per_rollout)):
        chunk = cuts[start:start + per_rollout]
        plan = plan_rollout(rng, ids, index, len(chunk), start, chunk)
        rollouts.append(plan)
        log.append(package_stream_id(plan.package_sha256), [PackageUploaded(
            sha256=plan.package_sha256, file_name=f"DataMiner {TARGET_VERSION} Full Upgrade ({index}).dmupgrade",
            size=123_456_789, manifest=manifest)])
        for agent in plan.agents:
            log.append(agent_stream_id(agent.name), [
                AgentRegistered(name=agent.name, address=agent.address, cluster=agent.cluster, version=OLD_VERSION),
                AgentFactsReported(facts=modern_facts(OLD_VERSION))])
        log.append(CLAIMS_STREAM, [RolloutClaimed(rollout_id=plan.rollout_id, clusters=(f"cluster-{index:03d}",),
                                                  agents=tuple(a.name for a in plan.agents))], plan.rollout_id)
        log.append(rollout_stream_id(plan.rollout_id), [plan, RolloutStarted()], plan.rollout_id)
        for agent, cut in zip(plan.agents, chunk, strict=True):
            interrupted = interrupted_history(agent, plan, cut, rng, now)
            upgrades.append(interrupted)
            log.append(upgrade_stream_id(agent.upgrade_id), interrupted.events, plan.rollout_id)
            if interrupted.installed:
                log.append(agent_stream_id(agent.name), [AgentVersionChanged(
                    version=TARGET_VERSION, previous_version=OLD_VERSION, upgrade_id=str(agent.upgrade_id))],
                    plan.rollout_id)
    written = log.insert_into(engine)
    store = SqlEventStore(engine, default_codec(), SystemClock())
    verdict = verify_chain(store.read_records())
    if not verdict.ok:
        raise RuntimeError(f"the generated hash chain is broken: {verdict.reason}")
    gateway = SimulatedAgentGateway(
        SimulatedAgent(name=u.agent.name, address=u.agent.address, cluster=u.agent.cluster,
                       version=TARGET_VERSION if u.installed else OLD_VERSION) for u in upgrades)
    packages = {agent.name: PackageRef(plan.package_sha256, TARGET_VERSION)
                for plan in rollouts for agent in plan.agents}
    for upgrade in upgrades:  # the agent had applied the step before the engine died
        if upgrade.applied_in_flight is not None:
            step, key = upgrade.applied_in_flight
            gateway.perform(AgentAddress(upgrade.agent.name, upgrade.agent.address), step, key,
                            packages[upgrade.agent.name])
    return ResumeWorld(rollouts=rollouts, upgrades=upgrades, gateway=gateway, events=written,
                       chain_verified=verdict.verified)


class FirstCallGateway:
    """An ``AgentGateway`` forwarding to another that notes when each upgrade first heard from the engine."""

    def __init__(self, inner: AgentGateway, expected: int) -> None:
        self._inner = inner
        self._expected = expected
        self._lock = threading.Lock()
        self.first: dict[str, tuple[float, str]] = {}
        """Upgrade id (the idempotency key's prefix) -> (``perf_counter`` of the first call, what it was)."""
        self.all_called = threading.Event()

    def _note(self, idempotency_key: str, what: str) -> None:
        moment = time.perf_counter()
        upgrade_id = idempotency_key.split(":", 1)[0]
        with self._lock:
            if upgrade_id not in self.first:
                self.first[upgrade_id] = (moment, what)
                if len(self.first) >= self._expected:
                    self.all_called.set()

    def perform(self, agent: AgentAddress, step: Step, idempotency_key: str, package: PackageRef,
                on_phase: PhaseReporter | None = None) -> StepOutcome:
        self._note(idempotency_key, f"perform {step.value}")
        return self._inner.perform(agent, step, idempotency_key, package, on_phase)

    def step_status(self, agent: AgentAddress, idempotency_key: str) -> StepStatus:
        self._note(idempotency_key, "step_status")
        return self._inner.step_status(agent, idempotency_key)

    def identify(self, address: str) -> AgentIdentity:
        return self._inner.identify(address)


@dataclass
class CountingWaiter:
    """Returns at once; counts what the engine asked to wait (thread-safe)."""

    waits: int = 0
    seconds: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def wait(self, seconds: float) -> None:
        with self._lock:
            self.waits += 1
            self.seconds += seconds


@dataclass(frozen=True)
class ResumeResult:
    upgrades: int
    rollouts: int
    setup_events: int
    chain_verified: int
    cuts: Counter[Cut]
    applied_in_flight: int
    first_call_seconds: list[float]
    """Seconds from engine start to each upgrade's first gateway call, sorted."""
    first_call_kinds: Counter[str]
    first_call_cpu_seconds: float
    appended_before_last_first_call: int
    """Events the engine had appended when the last first call came (read right after it)."""
    """CPU time (user + system, every thread) this process used from engine start to the last first call."""
    completed_seconds: float
    completed_cpu_seconds: float
    rollout_states: Counter[str]
    resumed_events: int
    begun: int
    events_appended: int
    waiter: CountingWaiter
    errors: list[str]
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]


def bench_resume(directory: Path, upgrade_count: int, per_rollout: int, seed: int,
                 profiler: ThreadProfiler | None, leased: bool) -> ResumeResult:
    url = f"sqlite:///{directory / 'resume.db'}"
    setup_engine = fresh_engine(url)
    try:
        progress(f"generating {upgrade_count} interrupted upgrades in rollouts of {per_rollout}")
        world = build_resume_world(setup_engine, upgrade_count, per_rollout, seed)
        progress(f"wrote {world.events} events in bulk; hash chain verified over {world.chain_verified} events")
    finally:
        setup_engine.dispose()
    waiter = CountingWaiter()
    gateway = FirstCallGateway(world.gateway, expected=len(world.upgrades))
    stop = threading.Event()
    load_before = os.getloadavg()
    progress("starting the engine")
    if profiler is not None:
        profiler.start()
    started, cpu_started = time.perf_counter(), time.process_time()
    app = bootstrap(Settings(database_url=url), gateway=gateway, waiter=waiter)
    engine = app.engine
    try:
        service = app.service
        process = app.engine_process(leases=app.leases() if leased else None)  # leased: as `serve` runs, one of several
        server = threading.Thread(target=process.serve, args=(stop,), name="engine-process", daemon=True)
        server.start()
        if not gateway.all_called.wait(COMPLETION_TIMEOUT_SECONDS):
            raise RuntimeError(f"only {len(gateway.first)} of {len(world.upgrades)} upgrades were called "
                               f"within {COMPLETION_TIMEOUT_SECONDS:.0f} s; errors: {process.errors!r}")
        cpu_first = time.process_time() - cpu_started
        head_at_first = service.store.head_position()
        progress("every upgrade had its first command re-issued; waiting for the rollouts to complete")
        deadline = started + COMPLETION_TIMEOUT_SECONDS
        while process.driving() and time.perf_counter() < deadline:
            time.sleep(0.01)
        completed, cpu_completed = time.perf_counter() - started, time.process_time() - cpu_started
        if profiler is not None:
            profiler.stop()
        stop.set()
        server.join()
        load_after = os.getloadavg()
        states = Counter(r.state.value for r in service.rollouts())
        with engine.connect() as conn:
            resumed = conn.execute(sa.select(sa.func.count()).select_from(events_table)
                                   .where(events_table.c.event_type == "AgentUpgradeResumed")).scalar_one()
            head = conn.execute(sa.select(sa.func.max(events_table.c.position))).scalar_one()
    finally:
        stop.set()
        app.close()
    return ResumeResult(
        upgrades=len(world.upgrades), rollouts=len(world.rollouts), setup_events=world.events,
        chain_verified=world.chain_verified, cuts=Counter(u.cut for u in world.upgrades),
        applied_in_flight=sum(u.applied_in_flight is not None for u in world.upgrades),
        first_call_seconds=sorted(moment - started for moment, _ in gateway.first.values()),
        first_call_kinds=Counter(what for _, what in gateway.first.values()),
        first_call_cpu_seconds=cpu_first, appended_before_last_first_call=head_at_first - world.events,
        completed_seconds=completed, completed_cpu_seconds=cpu_completed,
        rollout_states=states, resumed_events=int(resumed),
        begun=sum(u.cut is not Cut.SCHEDULED for u in world.upgrades),
        events_appended=int(head) - world.events, waiter=waiter,
        errors=[repr(e) for e in process.errors]
        + ([] if states[RolloutState.COMPLETED.value] == len(world.rollouts) else [f"rollouts ended {dict(states)}"]),
        load_before=load_before, load_after=load_after)


# -- part 2: pending timers --------------------------------------------------------------------


def build_timers_world(engine: Engine, count: int, seed: int) -> int:
    """``count`` rollouts planned to start in the future, one agent each; the events written."""
    rng = random.Random(seed)
    ids = seeded_ids(rng)
    now = SystemClock().now()
    log = BulkLog(default_codec(), ids, recorded_at=now - timedelta(hours=1))
    first_due = now + timedelta(days=1)
    plan = AgentUpgradePlan(options=OPTIONS, delayed_start_seconds=DELAYED_START_SECONDS)
    for index in range(count):
        agent = PlannedAgent(name=f"dma-{index:05d}", address=f"10.{index // 65536}.{index // 256 % 256}.{index % 256}",
                             cluster=f"cluster-{index:05d}", current_version=OLD_VERSION, upgrade_id=ids(), plan=plan)
        planned = RolloutPlanned(
            rollout_id=ids(), package_sha256=PACKAGE_SHA256, package_version=TARGET_VERSION, options=OPTIONS,
            upload_only=False, failover_policy=FailoverPolicy.SIMULTANEOUS, agents=(agent,), max_concurrent=1,
            max_errors=1, start_at=first_due + timedelta(seconds=index))
        log.append(rollout_stream_id(planned.rollout_id), [planned], planned.rollout_id)
    return log.insert_into(engine)


def paused_scheduler() -> BackgroundScheduler:
    scheduler = BackgroundScheduler(timezone="UTC")
    scheduler.start(paused=True)
    return scheduler


class NotingIndex:
    """A ``RolloutIndex`` forwarding to another that notes when the engine asks for the active rollouts:
    ``EngineProcess.tick`` has armed every scheduled start by then."""

    def __init__(self, inner: RolloutIndex) -> None:
        self._inner = inner
        self.asked_for_active: float | None = None

    def scheduled_starts(self) -> dict[UUID, datetime]:
        return self._inner.scheduled_starts()

    def active(self) -> list[tuple[UUID, RolloutState]]:
        if self.asked_for_active is None:
            self.asked_for_active = time.perf_counter()
        return self._inner.active()


@dataclass(frozen=True)
class Rearm:
    """One engine start re-arming the scheduled starts through ``EngineProcess.tick``."""

    armed_seconds: float
    """Engine start -> every scheduled start armed (the tick then goes on to look for active rollouts)."""
    tick_seconds: float
    tick_cpu_seconds: float
    next_tick_seconds: float
    """The engine's next look (every timer armed already), as each poll costs from then on."""
    jobs: int


def rearm(url: str, index_of: Callable[[App], RolloutIndex]) -> Rearm:
    """Engine start -> ``EngineProcess.tick`` armed every pending start on a paused scheduler; then one more tick."""
    started, cpu_started = time.perf_counter(), time.process_time()
    app = bootstrap(Settings(database_url=url), waiter=CountingWaiter())
    scheduler = paused_scheduler()
    try:
        index = NotingIndex(index_of(app))
        process = app.engine_process(scheduler=scheduler, index=index)
        process.tick()
        ticked, cpu = time.perf_counter(), time.process_time() - cpu_started
        process.tick()
        next_tick = time.perf_counter() - ticked
        jobs = len(scheduler.get_jobs())
    finally:
        scheduler.shutdown(wait=False)
        app.close()
    assert index.asked_for_active is not None
    return Rearm(armed_seconds=index.asked_for_active - started, tick_seconds=ticked - started, tick_cpu_seconds=cpu,
                 next_tick_seconds=next_tick, jobs=jobs)


def projection_index(app: App) -> RolloutIndex:
    """What ``serve`` uses: the pending-timers and progress projections, caught up by the index."""
    runner = ProjectionRunner(app.engine, app.store, app.clock, [ProgressProjection(), PendingTimersProjection()])
    return ProjectionIndex(runner, app.engine)


@dataclass(frozen=True)
class RearmResult:
    timers: int
    setup_events: int
    cold: Rearm
    warm: Rearm
    folded: Rearm
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]


def bench_rearm(directory: Path, count: int, seed: int, profiler: ThreadProfiler | None) -> RearmResult:
    url = f"sqlite:///{directory / 'timers.db'}"
    setup_engine = fresh_engine(url)
    try:
        progress(f"generating {count} rollouts planned to start in the future")
        written = build_timers_world(setup_engine, count, seed)
    finally:
        setup_engine.dispose()
    load_before = os.getloadavg()
    progress("re-arming from the projections, caught up from position 0")
    if profiler is not None:
        profiler.start()
    cold = rearm(url, projection_index)
    if profiler is not None:
        profiler.stop()
    progress("re-arming from the projections, current (a restart)")
    warm = rearm(url, projection_index)
    progress("re-arming by folding every rollout stream")
    folded = rearm(url, lambda app: FoldedIndex(app.service))
    for name, result in (("projections from 0", cold), ("projections current", warm), ("folded", folded)):
        if result.jobs != count:
            raise RuntimeError(f"{result.jobs} jobs armed ({name}), expected {count}")
    return RearmResult(timers=count, setup_events=written, cold=cold, warm=warm, folded=folded,
                       load_before=load_before, load_after=os.getloadavg())


# -- profiling ---------------------------------------------------------------------------------


class ThreadProfiler:
    """cProfile in every thread started while it runs (and the calling thread), merged at the end. Each
    thread's profile counts that thread's CPU time, not wall time, so threads waiting (for a turn, a lock,
    a future) add little; with a thousand threads the lock ``acquire`` line can still be far above the CPU s
    of the table, so read the other lines against that column."""

    def __init__(self) -> None:
        self._profiles: list[cProfile.Profile] = []
        self._lock = threading.Lock()

    def _hook(self, *_: Any) -> None:
        # Called by the new thread's first profiled event: swap in a cProfile of its own.
        sys.setprofile(None)
        profile = cProfile.Profile(time.thread_time)
        with self._lock:
            self._profiles.append(profile)
        profile.enable()

    def start(self) -> None:
        threading.setprofile(self._hook)
        self._hook()

    def stop(self) -> None:
        threading.setprofile(None)
        with self._lock:
            for profile in self._profiles:
                profile.disable()  # only stops the calling thread's; the others stop when their thread ends

    def report(self, sort: str, limit: int = 25) -> str:
        out = io.StringIO()
        with self._lock:
            profiles = [p for p in self._profiles if p.getstats()]
        if not profiles:
            return "(no profile data)"
        stats = pstats.Stats(profiles[0], stream=out)
        for profile in profiles[1:]:
            stats.add(profile)
        stats.sort_stats(sort).print_stats(limit)
        return out.getvalue()


# -- reporting ---------------------------------------------------------------------------------


HEADERS = ["measure", "wall s", "CPU s", "target"]


def verdict(seconds: float) -> str:
    return f"{TARGET_LABEL}: {'ok' if seconds < TARGET_SECONDS else 'MISSED'}"


def percentile(sorted_values: list[float], fraction: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(fraction * len(sorted_values)))]


def load_text(load: tuple[float, float, float]) -> str:
    return " / ".join(f"{value:.2f}" for value in load)


def machine_line() -> str:
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (f"machine: {os.cpu_count()} CPUs ({affinity} usable by this process); load average (1/5/15 min) at "
            f"start {load_text(os.getloadavg())}; Python {sys.version.split()[0]}; pid {os.getpid()}")


def report_resume(result: ResumeResult) -> None:
    print_table("Interrupted upgrades at engine start (seeded)", ["cut", "upgrades"],
                [[cut.value, str(result.cuts[cut])] for cut in Cut]
                + [["(steps in flight the agent had already applied)", str(result.applied_in_flight)]])
    firsts = result.first_call_seconds
    last = firsts[-1]
    rows = [
        ["engine start -> every upgrade's first gateway call (last one)", f"{last:.2f}",
         f"{result.first_call_cpu_seconds:.2f}", verdict(last)],
        ["  first call of the first upgrade", f"{firsts[0]:.3f}", "", ""],
        ["  p50 / p90 / p99 of first calls",
         f"{percentile(firsts, 0.5):.2f} / {percentile(firsts, 0.9):.2f} / {percentile(firsts, 0.99):.2f}", "", ""],
        ["engine start -> every rollout completed", f"{result.completed_seconds:.2f}",
         f"{result.completed_cpu_seconds:.2f}", "(no target)"],
    ]
    print_table(f"Resume: {result.upgrades} upgrades in {result.rollouts} Running rollouts, EngineProcess on "
                f"SQLite, simulated gateway with zero step latency", HEADERS, rows)
    print("\nfirst gateway call per upgrade: "
          + ", ".join(f"{kind} {n}" for kind, n in sorted(result.first_call_kinds.items())))
    print(f"AgentUpgradeResumed recorded: {result.resumed_events} (upgrades that had begun: {result.begun}); "
          f"rollouts at the end: {dict(result.rollout_states)}; events appended by the engine: "
          f"{result.events_appended:,}, {result.appended_before_last_first_call:,} of them before the last first call")
    print(f"setup (not timed): {result.setup_events:,} events bulk inserted, hash chain verified over "
          f"{result.chain_verified:,}; waits the engine asked for (returned at once): {result.waiter.waits} "
          f"totalling {result.waiter.seconds:,.0f} s (new delayed starts of {DELAYED_START_SECONDS} s; past-due "
          f"timers ask for none)")
    print(f"load average (1/5/15 min) before {load_text(result.load_before)}, after {load_text(result.load_after)}")
    if result.errors:
        print(f"ENGINE ERRORS: {result.errors}")


def report_rearm(result: RearmResult) -> None:
    rows = []
    for label, run in ((f"the projections from position 0 ({result.setup_events:,} events)", result.cold),
                       ("the projections current (a restart)", result.warm),
                       ("folding every rollout stream (baseline)", result.folded)):
        rows += [[f"engine start -> all {run.jobs:,} armed, {label}", f"{run.armed_seconds:.2f}", "",
                  verdict(run.armed_seconds) if run is not result.folded else ""],
                 ["  -> the tick done (it also looks for active rollouts)", f"{run.tick_seconds:.2f}",
                  f"{run.tick_cpu_seconds:.2f}", ""],
                 ["  the next tick (every timer armed already)", f"{run.next_tick_seconds:.2f}", "", ""]]
    print_table(f"Re-arm: {result.timers:,} scheduled rollout starts (one agent each) on a fresh SQLite file, "
                f"EngineProcess.tick on a paused APScheduler", HEADERS, rows)
    print(f"armed from the projections: {ratio(result.folded.armed_seconds, result.cold.armed_seconds):.1f}x (from 0) "
          f"and {ratio(result.folded.armed_seconds, result.warm.armed_seconds):.1f}x (current) as fast as by folding")
    print(f"load average (1/5/15 min) before {load_text(result.load_before)}, after {load_text(result.load_after)}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--upgrades", type=int, default=1000, help="interrupted agent upgrades (default 1000)")
    parser.add_argument("--agents-per-rollout", type=int, default=50,
                        help="agents per rollout, each rollout's max concurrent too (default 50)")
    parser.add_argument("--timers", type=int, default=10_000, help="pending scheduled starts (default 10000)")
    parser.add_argument("--seed", type=int, default=7, help="seed of the interrupted states (default 7)")
    parser.add_argument("--profile", action="store_true",
                        help="cProfile (CPU time) every thread of the timed parts and print the top functions")
    parser.add_argument("--leases", action="store_true",
                        help="resume with leases, as `serve` does (rollouts claimed, upgrades handed out and "
                             "claimed up to DMA_UPGRADE_ENGINE_CAPACITY)")
    args = parser.parse_args(argv)
    if args.upgrades < 1 or args.timers < 1 or args.agents_per_rollout < 1:
        parser.error("--upgrades, --timers and --agents-per-rollout must be at least 1")

    print(machine_line())
    resume_profiler = ThreadProfiler() if args.profile else None
    rearm_profiler = ThreadProfiler() if args.profile else None
    with tempfile.TemporaryDirectory(prefix="dma_upgrade_bench_recovery_") as name:
        directory = Path(name)
        resume = bench_resume(directory, args.upgrades, args.agents_per_rollout, args.seed, resume_profiler,
                              args.leases)
        rearm = bench_rearm(directory, args.timers, args.seed, rearm_profiler)
    report_resume(resume)
    report_rearm(rearm)
    print("\nCPU s: user + system CPU time of this process (every thread) over the same window; wall time well "
          "above it\nmeans the process waited (for a core taken by other processes, for SQLite's disk syncs). "
          "The 2-core\ntarget assumes the cores are free: compare the load average with the core count.")
    for title, profiler in (("resume (engine start -> every rollout completed), every thread", resume_profiler),
                            ("re-arm from the projections caught up from position 0", rearm_profiler)):
        if profiler is not None:
            for sort in ("tottime", "cumulative"):
                print(f"\ncProfile (CPU seconds) of {title}, top by {sort}:")
                print(profiler.report(sort))


if __name__ == "__main__":
    main()
