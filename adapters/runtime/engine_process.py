"""The engine as a long-running process: resumes unfinished rollouts, starts new ones, fires scheduled starts.

APScheduler is only the alarm clock. Every due time is an event (a rollout's ``start_at``, a step's
``StepDelayed``); at start-up the process re-arms the scheduled starts it finds in the store, including
those that came due while it was down (they fire at once). A firing only hands the rollout to a runner,
and a runner re-checks the rollout's state before acting, so a duplicate firing is harmless. Step
timers are honoured by the runner that resumes the upgrade, which waits out what is left of them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol
from uuid import UUID

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.date import DateTrigger
from sqlalchemy.engine import Engine

from dma_upgrade.adapters.runtime.leased_work import OUTAGES, Heartbeat, LeasedWorkQueue, UpgradeDrivers, run_leased
from dma_upgrade.adapters.runtime.ports import Stopping, Waiter
from dma_upgrade.adapters.runtime.preloaded import PreloadedUpgrades
from dma_upgrade.adapters.runtime.rollout_runner import RolloutRunner
from dma_upgrade.adapters.runtime.turns import Turns
from dma_upgrade.adapters.sql.database import first_line
from dma_upgrade.adapters.sql.leases import ROLLOUT, HeldLease, SqlLeases
from dma_upgrade.adapters.sql.projection_runner import ProjectionRunner, read_rows
from dma_upgrade.adapters.sql.wakeups import Wakeup
from dma_upgrade.engine.agent_upgrade import AgentUpgrade
from dma_upgrade.engine.decisions import started_by_hand
from dma_upgrade.engine.ports import AgentGateway
from dma_upgrade.engine.rollout import ACTIVE_STATES, Rollout, RolloutState
from dma_upgrade.engine.rollout_events import rollout_id_of_stream, rollout_stream_id
from dma_upgrade.engine.service import UpgradeService
from dma_upgrade.engine.upgrade_machine import STOPPED_STATES
from dma_upgrade.projections.progress import ROLLOUTS
from dma_upgrade.projections.timers import SCHEDULED_START, TIMERS

_log = logging.getLogger("dma_upgrade.engine")

STOP_GRACE_SECONDS = 5.0
"""How long a stopping engine waits for each rollout runner to record what it has in hand (waits end at once;
an agent call in progress ends at its next answer line or its timeout, its step then asked about on restart)."""
LEASED_TURNS = 32
"""Turns of an engine among several: it drives up to its capacity of upgrades, and the more of their appends
are under way at once, the more the event store writes in one commit (measured: 4 turns 13.8 upgrades/s,
32 turns 32.8 upgrades/s, with ``bench/scale.py --agents 1000``)."""


@dataclass(frozen=True)
class Doubt:
    """A step whose outcome the engine did not learn: which attempt, and why."""

    step: str
    attempt: int
    reason: str


@dataclass(frozen=True)
class Resumption:
    """What a starting engine will do with one unfinished agent upgrade."""

    rollout_id: UUID
    agent: str
    state: str
    step_in_flight: str | None
    idempotency_key: str | None
    doubt: Doubt | None = None
    """The step in flight is in doubt: asked about until the agent answers or an operator resolves it."""
    awaiting_manual_start: str | None = None
    """The agent an operator must start before the switch-over (Auto Start off)."""

    def describe(self) -> str:
        if self.doubt is not None:
            return (f"resume from {self.state}: {self.doubt.step} (attempt {self.doubt.attempt}) is in doubt "
                    f"({self.doubt.reason}); ask the agent about it (key {self.idempotency_key}) before sending "
                    f"anything, or resolve it with `dma-upgrade upgrade resolve {self.rollout_id} {self.agent} "
                    f"--applied|--not-applied`")
        if self.step_in_flight is not None:
            return (f"resume from {self.state}: ask the agent about {self.step_in_flight} "
                    f"(key {self.idempotency_key}) before sending anything")
        if self.awaiting_manual_start is not None:
            return (f"resume from {self.state}: wait for a manual start of {self.awaiting_manual_start} before the "
                    f"switch-over (`dma-upgrade agents start {self.awaiting_manual_start}`)")
        return f"resume from {self.state}"


def planned_resumptions(service: UpgradeService) -> list[tuple[Rollout, list[Resumption]]]:
    """Every rollout an engine would take up now, with each unfinished upgrade and how it resumes."""
    plans = []
    for rollout in service.rollouts():
        if rollout.state not in ACTIVE_STATES:
            continue
        resumptions = []
        for agent in rollout.plan.agents:
            upgrade = service.upgrade(agent.upgrade_id)
            if upgrade.scheduled is None or upgrade.state in STOPPED_STATES:
                continue
            step = upgrade.step_in_progress
            doubt = Doubt(step.value, upgrade.attempts[step], upgrade.last_error or "no answer") \
                if step is not None and upgrade.in_doubt else None
            awaited = agent.name if upgrade.awaiting_manual_start \
                and not started_by_hand(upgrade, service.agent(agent.name)) else None
            resumptions.append(Resumption(rollout.plan.rollout_id, agent.name, upgrade.state.value,
                                          step.value if step else None,
                                          _key(upgrade) if step else None, doubt, awaited))
        plans.append((rollout, resumptions))
    return plans


def _key(upgrade: AgentUpgrade) -> str:
    step = upgrade.step_in_progress
    assert step is not None
    return upgrade.idempotency_key(step, upgrade.attempts[step])


class RolloutIndex(Protocol):
    """Where the engine looks for work: the scheduled starts still pending, and the active rollouts."""

    def scheduled_starts(self) -> dict[UUID, datetime]:
        """When each rollout still waiting for its scheduled start is due (including those past due)."""
        ...

    def active(self) -> list[tuple[UUID, RolloutState]]:
        """Every Planned, Running or Paused rollout with its state."""
        ...


class FoldedIndex:
    """Finds work by folding every rollout stream (simple; fine for tests and small stores)."""

    def __init__(self, service: UpgradeService) -> None:
        self._service = service

    def scheduled_starts(self) -> dict[UUID, datetime]:
        return {r.plan.rollout_id: r.plan.start_at for r in self._service.rollouts()
                if r.state is RolloutState.PLANNED and r.plan.start_at is not None}

    def active(self) -> list[tuple[UUID, RolloutState]]:
        return [(r.plan.rollout_id, r.state) for r in self._service.rollouts() if r.state in ACTIVE_STATES]


class ProjectionIndex:
    """Finds work in the pending-timers and progress projections (what ``serve`` uses), each caught up first
    when this process ``follows`` the projections (with several engines one does; the others read)."""

    def __init__(self, projections: ProjectionRunner, engine: Engine,
                 follows: Callable[[], bool] = lambda: True) -> None:
        self._projections = projections
        self._engine = engine
        self._follows = follows

    def scheduled_starts(self) -> dict[UUID, datetime]:
        if self._follows():
            self._projections.catch_up(["pending_timers"])
        return {UUID(rollout_id_of_stream(row["stream_id"])): row["due_at"]
                for row in read_rows(self._engine, TIMERS, kind=SCHEDULED_START)}

    def active(self) -> list[tuple[UUID, RolloutState]]:
        if self._follows():
            self._projections.catch_up(["progress"])
        return [(UUID(row["rollout_id"]), RolloutState(row["state"]))
                for row in read_rows(self._engine, ROLLOUTS, state=tuple(state.value for state in ACTIVE_STATES))]


class EngineProcess:
    """Drives every active rollout in its own thread; polls for new work, and each runner for an operator's
    commands, every ``poll_seconds``.

    The runners share one set of turns at the engine's work, so the first command of every upgrade
    taken up goes out before any upgrade's later steps. At its first look the engine folds the upgrades
    of every rollout already under way from one read, for the runners it starts then.

    With ``leases`` the process is one of any number sharing the database: it runs only the rollouts
    whose lease it claims (a scheduled start fires in the process that claims it), hands their upgrades
    out, and drives up to ``capacity`` handed-out upgrades of any rollout at once (``UpgradeDrivers``).
    Without, it is the only engine and drives everything itself.
    """

    def __init__(self, service: UpgradeService, gateway: AgentGateway, waiter: Waiter, *,
                 poll_seconds: float = 1.0, scheduler: BackgroundScheduler | None = None,
                 index: RolloutIndex | None = None, turns: Turns | None = None,
                 leases: SqlLeases | None = None, capacity: int = 1000,
                 stopping: threading.Event | None = None, phase_seconds: float = 0.0) -> None:
        self.index = index or FoldedIndex(service)
        self.service = service
        self.gateway = gateway
        self.waiter = waiter
        self.poll_seconds = poll_seconds
        self.phase_seconds = phase_seconds
        """How often at most an install's phase is recorded (``RolloutRunner.phase_seconds``)."""
        self.scheduler = scheduler or BackgroundScheduler(timezone="UTC")
        self.turns = turns or (Turns() if leases is None else Turns(min(capacity, LEASED_TURNS)))
        self.leases = leases
        self.wakeup = Wakeup()
        """Wakes the look for new work (a notification of a new rollout or command)."""
        self.drivers_wakeup = Wakeup()
        """Wakes the claim of handed-out upgrades (a notification of new ones)."""
        self.actor = engine_actor(leases.owner) if leases is not None else "engine"
        self.stopping = stopping or threading.Event()
        """Set when the process stops (at the latest as ``serve`` ends): every runner and driver stops at its next
        check and gives its lease back."""
        self.work: LeasedWorkQueue | None = None
        self.drivers: UpgradeDrivers | None = None
        if leases is not None:
            self.work = LeasedWorkQueue(leases, settle_seconds=poll_seconds)
            self.drivers = UpgradeDrivers(
                self._runner(), leases, self.work, capacity=capacity, wakeup=self.drivers_wakeup, on_error=self._report)
        self._first_look = True
        self._armed: dict[UUID, datetime] = {}
        self._driving: dict[UUID, threading.Thread] = {}
        self._lock = threading.Lock()
        self.errors: list[BaseException] = []

    def serve(self, stop: threading.Event) -> None:
        """Run until ``stop`` is set: arm scheduled starts, drive due rollouts, look for new ones.

        The first look re-arms every pending start on the scheduler started paused (so adding a job
        does not set it looking for due jobs each time); it runs once they are all armed. With leases,
        a heartbeat and the upgrade drivers run beside it, and every lease is given back at the end.
        """
        helpers = self._start_helpers(stop)
        self.scheduler.start(paused=True)
        try:
            self.tick_unless_unreachable()
            self.scheduler.resume()
            while not stop.is_set():
                self.wakeup.wait(self.poll_seconds)
                if not stop.is_set():
                    self.tick_unless_unreachable()
        finally:
            self.stopping.set()
            self.scheduler.shutdown(wait=False)
            stop.set()
            self.drivers_wakeup.wake()
            for helper in helpers:
                helper.join(timeout=10)
            for runner in self._threads():
                runner.join(timeout=STOP_GRACE_SECONDS)  # each records what it has in hand, then stops
            if self.leases is not None:
                self._give_back_all(self.leases)

    def _start_helpers(self, stop: threading.Event) -> list[threading.Thread]:
        """With leases: free the leases a crashed predecessor on this host left, start heartbeat and drivers."""
        if self.leases is None or self.drivers is None:
            return []
        try:
            self.leases.free_dead_local_holders()
            self.leases.announce()
        except OUTAGES as error:
            _log.warning("cannot look for leases left by a crashed engine (%s)", first_line(error))
        heartbeat = Heartbeat(self.leases, self.leases.seconds / 4)
        helpers = [threading.Thread(target=heartbeat.serve, args=(stop,), name="heartbeat", daemon=True),
                   threading.Thread(target=self.drivers.serve, args=(stop, self.poll_seconds), name="drivers",
                                    daemon=True)]
        for helper in helpers:
            helper.start()
        return helpers

    @staticmethod
    def _give_back_all(leases: SqlLeases) -> None:
        try:
            leases.release_all()
        except OUTAGES as error:
            _log.warning("could not give back this engine's leases (%s); they lapse in %.0f s", first_line(error),
                         leases.seconds)

    def tick_unless_unreachable(self) -> bool:
        """``tick``, but a database outage only skips this look (logged): the engine outlives the outage,
        and so does the API that reports it. False when the look was skipped."""
        try:
            self.tick()
        except OUTAGES as error:
            _log.warning("the database cannot be reached (%s); looking again in %.1f s", first_line(error),
                         self.poll_seconds)
            return False
        return True

    def tick(self) -> None:
        """One look at the store: arm the scheduled starts still to come, take up each other active rollout
        (with leases: those whose lease this process claims). Only starts that are new or moved are armed,
        and only those gone are disarmed."""
        now = self.service.clock.now()
        later = {rollout_id: due for rollout_id, due in self.index.scheduled_starts().items() if due > now}
        for rollout_id in [r for r in self._armed if r not in later]:
            self._disarm(rollout_id)  # it came due, started, or ended some other way
        for rollout_id, due in later.items():
            if self._armed.get(rollout_id) != due:
                self.scheduler.add_job(self.fire, DateTrigger(due, self.scheduler.timezone), args=[rollout_id],
                                       id=_job_id(rollout_id), replace_existing=True, misfire_grace_time=None)
                self._armed[rollout_id] = due
        due_now = [(rollout_id, state) for rollout_id, state in self.index.active() if rollout_id not in later]
        driving = set(self.driving())
        leases = self._claim([rollout_id for rollout_id, _ in due_now if rollout_id not in driving])
        upgrades = PreloadedUpgrades(self.service)
        if self._first_look:  # this engine just started: it takes up every rollout already under way
            self._first_look = False
            upgrades.load(agent.upgrade_id for rollout_id, state in due_now
                          if state is not RolloutState.PLANNED and rollout_id in leases
                          for agent in self.service.rollout(rollout_id).plan.agents)
        for rollout_id in leases:
            self._start(rollout_id, upgrades, leases[rollout_id])

    def _claim(self, rollout_ids: list[UUID]) -> dict[UUID, HeldLease | None]:
        """The rollouts among ``rollout_ids`` this process may run, with its lease on each (None without leases)."""
        if self.leases is None:
            return dict.fromkeys(rollout_ids)
        return {UUID(lease.key): lease for lease in self.leases.claim(ROLLOUT, rollout_ids)}

    def _disarm(self, rollout_id: UUID) -> None:
        del self._armed[rollout_id]
        if self.scheduler.get_job(_job_id(rollout_id)) is not None:
            self.scheduler.remove_job(_job_id(rollout_id))

    def fire(self, rollout_id: UUID) -> None:
        """A scheduled start came due: re-check the rollout, then drive it if it is still active (with leases:
        if this process claims it, so the start fires in one process only)."""
        if self.service.rollout(rollout_id).state in ACTIVE_STATES:
            self.drive(rollout_id)

    def drive(self, rollout_id: UUID) -> None:
        """Start a runner on a rollout unless this process already drives it (a duplicate firing is a no-op)."""
        if rollout_id in self.driving():
            return
        for claimed, lease in self._claim([rollout_id]).items():
            self._start(claimed, PreloadedUpgrades(self.service), lease)

    def _start(self, rollout_id: UUID, upgrades: PreloadedUpgrades, lease: HeldLease | None) -> None:
        """Start a runner that takes the rollout's upgrades from ``upgrades`` (read as it starts)."""
        with self._lock:
            running = self._driving.get(rollout_id)
            if running is not None and running.is_alive():
                return
            thread = threading.Thread(target=self._run, args=(rollout_id, upgrades, lease),
                                      name=rollout_stream_id(rollout_id), daemon=True)
            self._driving[rollout_id] = thread
            thread.start()

    def _run(self, rollout_id: UUID, upgrades: PreloadedUpgrades, lease: HeldLease | None) -> None:
        runner = self._runner(upgrades)
        if lease is None or self.leases is None:
            try:
                runner.run(rollout_id)
            except Stopping:
                pass  # the process stops; the next one resumes from the events
            except BaseException as exc:
                self._report(exc)
            return
        leases = self.leases

        def run_to_the_end() -> None:
            runner.run(rollout_id, lease)
            leases.forget_rollout(rollout_id)

        run_leased(leases, lease, run_to_the_end, f"rollout {rollout_id}", self._report)

    def _runner(self, upgrades: PreloadedUpgrades | None = None) -> RolloutRunner:
        """A runner of this process (its turns, work queue and shutdown), taking its upgrades from ``upgrades``."""
        return RolloutRunner(self.service, self.gateway, self.waiter, actor=self.actor, poll_seconds=self.poll_seconds,
                             turns=self.turns, upgrades=upgrades, work=self.work, stopping=self.stopping,
                             phase_seconds=self.phase_seconds)

    def _report(self, error: BaseException) -> None:
        self.errors.append(error)
        _log.error("engine error: %s", error, exc_info=error)

    def upgrades_driving(self) -> int:
        """Handed-out upgrades this process drives right now (0 without leases: its runners drive theirs)."""
        return self.drivers.driving() if self.drivers is not None else 0

    def driving(self) -> list[UUID]:
        """Rollouts this process drives right now."""
        with self._lock:
            return [rollout_id for rollout_id, thread in self._driving.items() if thread.is_alive()]

    def _threads(self) -> list[threading.Thread]:
        with self._lock:
            return list(self._driving.values())


FOLLOWER_ROLE = "projections"
"""The role of the one engine process of several that keeps the projections caught up (the others read)."""


def engine_actor(owner: str) -> str:
    """The actor an engine process records its events as: ``engine:`` and its instance (host/pid/random)."""
    return f"engine:{owner}"


def _job_id(rollout_id: UUID) -> str:
    return f"start-{rollout_id}"
