"""The engine as a long-running process: resumes unfinished rollouts, starts new ones, fires scheduled starts.

APScheduler is only the alarm clock. Every due time is an event (a rollout's ``start_at``, a step's
``StepDelayed``); at start-up the process re-arms the scheduled starts it finds in the store, including
those that came due while it was down (they fire at once). A firing only hands the rollout to a runner,
and a runner re-checks the rollout's state before acting, so a duplicate firing is harmless. Step
timers are honoured by the runner that resumes the upgrade, which waits out what is left of them.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol
from uuid import UUID

from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy.engine import Engine

from adapters.sql.projection_runner import ProjectionRunner, read_rows
from engine.agent_upgrade import AgentUpgrade
from engine.ports import AgentGateway, Waiter
from engine.rollout import Rollout, RolloutState
from engine.runner import RolloutRunner
from engine.service import UpgradeService
from engine.upgrade_machine import STOPPED_STATES
from projections.progress import ROLLOUTS
from projections.timers import SCHEDULED_START, TIMERS

ACTIVE = (RolloutState.PLANNED, RolloutState.RUNNING, RolloutState.PAUSED)


@dataclass(frozen=True)
class Resumption:
    """What a starting engine will do with one unfinished agent upgrade."""

    rollout_id: UUID
    agent: str
    state: str
    step_in_flight: str | None
    idempotency_key: str | None

    def describe(self) -> str:
        if self.step_in_flight is None:
            return f"resume from {self.state}"
        return (f"resume from {self.state}: ask the agent about {self.step_in_flight} "
                f"(key {self.idempotency_key}) before sending anything")


def planned_resumptions(service: UpgradeService) -> list[tuple[Rollout, list[Resumption]]]:
    """Every rollout an engine would take up now, with each unfinished upgrade and how it resumes."""
    plans = []
    for rollout in service.rollouts():
        if rollout.state not in ACTIVE:
            continue
        resumptions = []
        for agent in rollout.plan.agents:
            upgrade = service.upgrade(agent.upgrade_id)
            if upgrade.scheduled is None or upgrade.state in STOPPED_STATES:
                continue
            step = upgrade.step_in_progress
            resumptions.append(Resumption(rollout.plan.rollout_id, agent.name, upgrade.state.value,
                                          step.value if step else None,
                                          _key(upgrade) if step else None))
        plans.append((rollout, resumptions))
    return plans


def _key(upgrade: AgentUpgrade) -> str:
    step = upgrade.step_in_progress
    assert step is not None
    return upgrade.idempotency_key(step, upgrade.attempts[step])


class RolloutIndex(Protocol):
    """Where the engine looks for work: the active rollouts and their scheduled starts."""

    def active(self) -> list[tuple[UUID, RolloutState, datetime | None]]:
        """Every Planned, Running or Paused rollout with its state and scheduled start (if any)."""
        ...


class FoldedIndex:
    """Finds work by folding every rollout stream (simple; fine for tests and small stores)."""

    def __init__(self, service: UpgradeService) -> None:
        self._service = service

    def active(self) -> list[tuple[UUID, RolloutState, datetime | None]]:
        return [(r.plan.rollout_id, r.state, r.plan.start_at) for r in self._service.rollouts() if r.state in ACTIVE]


class ProjectionIndex:
    """Finds work in the progress and pending-timers projections, caught up first (what ``serve`` uses)."""

    def __init__(self, projections: ProjectionRunner, engine: Engine) -> None:
        self._projections = projections
        self._engine = engine

    def active(self) -> list[tuple[UUID, RolloutState, datetime | None]]:
        self._projections.catch_up(["progress", "pending_timers"])
        starts = {row["stream_id"].removeprefix("rollout-"): row["due_at"]
                  for row in read_rows(self._engine, TIMERS, kind=SCHEDULED_START)}
        return [(UUID(row["rollout_id"]), RolloutState(row["state"]), starts.get(row["rollout_id"]))
                for state in ACTIVE for row in read_rows(self._engine, ROLLOUTS, state=state.value)]


class EngineProcess:
    """Drives every active rollout in its own thread; polls for new work."""

    def __init__(self, service: UpgradeService, gateway: AgentGateway, waiter: Waiter, *,
                 poll_seconds: float = 1.0, scheduler: BackgroundScheduler | None = None,
                 index: RolloutIndex | None = None) -> None:
        self.index = index or FoldedIndex(service)
        self.service = service
        self.gateway = gateway
        self.waiter = waiter
        self.poll_seconds = poll_seconds
        self.scheduler = scheduler or BackgroundScheduler(timezone="UTC")
        self._driving: dict[UUID, threading.Thread] = {}
        self._lock = threading.Lock()
        self.errors: list[BaseException] = []

    def serve(self, stop: threading.Event) -> None:
        """Run until ``stop`` is set: arm scheduled starts, drive due rollouts, look for new ones."""
        self.scheduler.start()
        try:
            while not stop.is_set():
                self.tick()
                stop.wait(self.poll_seconds)
        finally:
            self.scheduler.shutdown(wait=False)

    def tick(self) -> None:
        """One look at the store: hand each active rollout to a runner, or arm its scheduled start."""
        now = self.service.clock.now()
        active = self.index.active()
        for job in self.scheduler.get_jobs():
            if job.id.startswith("start-") and not any(job.id == f"start-{a[0]}" for a in active if a[2]):
                job.remove()  # the rollout started, or ended, some other way
        for rollout_id, state, start_at in active:
            job_id = f"start-{rollout_id}"
            if state is RolloutState.PLANNED and start_at is not None and start_at > now:
                self.scheduler.add_job(self.fire, "date", run_date=start_at, args=[rollout_id],
                                       id=job_id, replace_existing=True, misfire_grace_time=None)
                continue
            if self.scheduler.get_job(job_id) is not None:
                self.scheduler.remove_job(job_id)
            self.drive(rollout_id)

    def fire(self, rollout_id: UUID) -> None:
        """A scheduled start came due: re-check the rollout, then drive it if it is still active."""
        if self.service.rollout(rollout_id).state in ACTIVE:
            self.drive(rollout_id)

    def drive(self, rollout_id: UUID) -> None:
        """Start a runner on a rollout unless this process already drives it (a duplicate firing is a no-op)."""
        with self._lock:
            running = self._driving.get(rollout_id)
            if running is not None and running.is_alive():
                return
            thread = threading.Thread(target=self._run, args=(rollout_id,), name=f"rollout-{rollout_id}",
                                      daemon=True)
            self._driving[rollout_id] = thread
            thread.start()

    def _run(self, rollout_id: UUID) -> None:
        try:
            RolloutRunner(self.service, self.gateway, self.waiter).run(rollout_id)
        except BaseException as exc:
            self.errors.append(exc)

    def driving(self) -> list[UUID]:
        """Rollouts this process drives right now."""
        with self._lock:
            return [rollout_id for rollout_id, thread in self._driving.items() if thread.is_alive()]
