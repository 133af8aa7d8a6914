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
from uuid import UUID

from apscheduler.schedulers.background import BackgroundScheduler

from engine.agent_upgrade import AgentUpgrade
from engine.ports import AgentGateway, Waiter
from engine.rollout import Rollout, RolloutState
from engine.runner import RolloutRunner
from engine.service import UpgradeService
from engine.upgrade_machine import UpgradeState

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
            if upgrade.scheduled is None or upgrade.state in (UpgradeState.COMPLETED, UpgradeState.CANCELLED,
                                                               UpgradeState.FAILED):
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


class EngineProcess:
    """Drives every active rollout in its own thread; polls the store for new work."""

    def __init__(self, service: UpgradeService, gateway: AgentGateway, waiter: Waiter, *,
                 poll_seconds: float = 1.0, scheduler: BackgroundScheduler | None = None) -> None:
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
        for rollout in self.service.rollouts():
            plan = rollout.plan
            job_id = f"start-{plan.rollout_id}"
            if rollout.state is RolloutState.PLANNED and plan.start_at is not None and plan.start_at > now:
                self.scheduler.add_job(self.fire, "date", run_date=plan.start_at, args=[plan.rollout_id],
                                       id=job_id, replace_existing=True, misfire_grace_time=None)
                continue
            if self.scheduler.get_job(job_id) is not None:
                self.scheduler.remove_job(job_id)
            if rollout.state in ACTIVE:
                self.drive(plan.rollout_id)

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
