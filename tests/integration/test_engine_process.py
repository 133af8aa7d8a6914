"""The engine process: scheduled starts armed on APScheduler, due rollouts driven once, resumption after a
crash, the CLI's ``--at`` and ``recover --dry-run``, and agents over HTTP that break or lie.

Time is a ``FakeClock`` and waits advance it (``FakeWaiter``); the scheduler is started paused so its jobs
can be inspected without firing, except in the one test that lets a real ``BackgroundScheduler`` fire a
start half a second ahead on the wall clock.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.date import DateTrigger
from fastapi import FastAPI, Request
from fastapi.responses import Response

from dma_upgrade.adapters.agents.http_gateway import HttpAgentGateway
from dma_upgrade.adapters.agents.simulator import LoopbackRoutes, serve_in_thread, serve_simulation
from dma_upgrade.adapters.clock import SystemClock, UuidFactory
from dma_upgrade.adapters.runtime.engine_process import EngineProcess, ProjectionIndex, Resumption, planned_resumptions
from dma_upgrade.adapters.runtime.ports import Stopping
from dma_upgrade.adapters.runtime.preloaded import PreloadedUpgrades
from dma_upgrade.adapters.runtime.rollout_runner import RolloutRunner
from dma_upgrade.adapters.runtime.turns import Turns
from dma_upgrade.adapters.sql.projection_runner import ProjectionRunner
from dma_upgrade.engine.agent_events import AgentLeftStopped, AgentVersionChanged
from dma_upgrade.engine.agent_upgrade import upgrade_stream_id
from dma_upgrade.engine.commands import CancelRollout, PauseRollout
from dma_upgrade.engine.errors import StoreUnavailable
from dma_upgrade.engine.events import NewEvent
from dma_upgrade.engine.ports import AgentAddress, AgentGateway, PackageRef, PhaseReporter, StepOutcome, StepStatus
from dma_upgrade.engine.rollout import ACTIVE_STATES, RolloutState
from dma_upgrade.engine.rollout_events import RolloutPlanned, RolloutStarted, rollout_stream_id
from dma_upgrade.engine.service import OptionOverrides, UpgradeService
from dma_upgrade.engine.upgrade_events import (
    AgentUpgradeResumed,
    Step,
    StepDelayed,
    StepFailed,
    StepInDoubt,
    StepStarted,
    StepSucceeded,
)
from dma_upgrade.engine.upgrade_machine import UpgradeState
from dma_upgrade.projections.catalog import all_projections
from tests.conftest import FakeClock
from tests.e2e.cli import run_cli
from tests.integration.rollout_harness import (
    ACTOR,
    BACKUP,
    MAIN,
    PACKAGE_VERSION,
    AgentSpec,
    RolloutHarness,
)

WIDE = {"COLUMNS": "400"}


@pytest.fixture
def paused_scheduler() -> Iterator[BackgroundScheduler]:
    """A real scheduler that never fires: started paused, so its jobs can be looked at."""
    scheduler = BackgroundScheduler(timezone="UTC")
    scheduler.start(paused=True)
    yield scheduler
    scheduler.shutdown(wait=False)


def engine_process(h: RolloutHarness, scheduler: BackgroundScheduler,
                   gateway: AgentGateway | None = None) -> EngineProcess:
    return EngineProcess(h.service, gateway or h.gateway, h.waiter, poll_seconds=0.05, scheduler=scheduler)


def runner_threads(rollout_id: UUID) -> list[threading.Thread]:
    """The threads an engine process drives ``rollout_id`` in (it names them after the rollout)."""
    return [t for t in threading.enumerate() if t.name == f"rollout-{rollout_id}" and t.is_alive()]


def join_runners(process: EngineProcess, rollout_id: UUID) -> None:
    for thread in runner_threads(rollout_id):
        thread.join(30)
        assert not thread.is_alive(), "the rollout runner did not finish"
    assert process.errors == []


def events_of(h: RolloutHarness, kind: type) -> list[Any]:
    return [r for r in h.store.read_all() if isinstance(r.event, kind)]


class BlockingGateway:
    """Delegates to a gateway; ``perform`` first waits until ``release`` is set (10 s at most)."""

    def __init__(self, inner: AgentGateway) -> None:
        self.inner = inner
        self.release = threading.Event()
        self.entered = threading.Event()

    def perform(self, agent: AgentAddress, step: Step, idempotency_key: str, package: PackageRef,
                on_phase: PhaseReporter | None = None) -> StepOutcome:
        self.entered.set()
        self.release.wait(10)
        return self.inner.perform(agent, step, idempotency_key, package, on_phase)

    def step_status(self, agent: AgentAddress, idempotency_key: str) -> StepStatus:
        return self.inner.step_status(agent, idempotency_key)

    def identify(self, address: str) -> Any:
        return self.inner.identify(address)


class EngineDied(Exception):
    """Stands for the engine process dying in the middle of a step."""


class DyingGateway:
    """Delegates to a gateway and records every call; the engine "dies" right after the agent applied an
    install, or ``dies_after`` (the agent did it, the engine never heard back)."""

    def __init__(self, inner: AgentGateway, dies_after: Step = Step.INSTALL) -> None:
        self.inner = inner
        self.dies_after = dies_after
        self.dying = True
        self.calls: list[tuple[str, str]] = []

    def perform(self, agent: AgentAddress, step: Step, idempotency_key: str, package: PackageRef,
                on_phase: PhaseReporter | None = None) -> StepOutcome:
        self.calls.append(("perform", idempotency_key))
        outcome = self.inner.perform(agent, step, idempotency_key, package, on_phase)
        if self.dying and step is self.dies_after:
            raise EngineDied(f"the engine died after {agent.name} did {step.value}")
        return outcome

    def step_status(self, agent: AgentAddress, idempotency_key: str) -> StepStatus:
        self.calls.append(("step_status", idempotency_key))
        return self.inner.step_status(agent, idempotency_key)

    def identify(self, address: str) -> Any:
        return self.inner.identify(address)


def crash_mid_install(h: RolloutHarness) -> tuple[RolloutPlanned, DyingGateway]:
    """Start a rollout of the cluster and let the engine die as each first-wave install is applied."""
    planned = h.start(failover_policy="backup-first")
    dying = DyingGateway(h.gateway)
    with pytest.raises(EngineDied):
        RolloutRunner(h.service, dying, h.waiter, poll_seconds=0.05).run(planned.rollout_id)
    return planned, dying


# -- scheduled starts --------------------------------------------------------------------------------


def test_a_start_in_the_future_arms_one_job_at_that_time_and_drives_nothing(
        harness: RolloutHarness, paused_scheduler: BackgroundScheduler) -> None:
    start_at = harness.clock.now() + timedelta(hours=2)
    planned = harness.start(start_at=start_at)
    process = engine_process(harness, paused_scheduler)
    head = harness.head()

    process.tick()
    process.tick()

    jobs = paused_scheduler.get_jobs()
    assert len(jobs) == 1
    job = jobs[0]
    assert job.id == f"start-{planned.rollout_id}"
    assert isinstance(job.trigger, DateTrigger)
    assert job.next_run_time == start_at
    assert job.args == (planned.rollout_id,)
    assert process.driving() == []
    assert runner_threads(planned.rollout_id) == []
    assert harness.head() == head
    assert harness.service.rollout(planned.rollout_id).state is RolloutState.PLANNED
    assert harness.gateway.journal() == []


def test_a_start_that_came_due_while_the_engine_was_down_is_driven_at_once(
        harness: RolloutHarness, paused_scheduler: BackgroundScheduler) -> None:
    planned = harness.start(start_at=harness.clock.now() + timedelta(minutes=10))
    harness.clock.advance(3600)  # the engine was down when the start came due
    process = engine_process(harness, paused_scheduler)
    ticked_at = harness.clock.now()

    process.tick()

    assert paused_scheduler.get_jobs() == []
    join_runners(process, planned.rollout_id)
    assert harness.service.rollout(planned.rollout_id).state is RolloutState.COMPLETED
    started = events_of(harness, RolloutStarted)
    assert [r.recorded_at for r in started] == [ticked_at]  # started before any wait, not an hour late


def test_a_start_that_came_due_while_the_engine_was_down_records_when_it_was_due_and_when_it_started(
        harness: RolloutHarness, paused_scheduler: BackgroundScheduler) -> None:
    start_at = harness.clock.now() + timedelta(minutes=10)
    planned = harness.start(start_at=start_at)
    harness.clock.advance(600 + 11)  # the engine was killed before the time, and restarted 11 s after it
    process = engine_process(harness, paused_scheduler)
    restarted_at = harness.clock.now()

    process.tick()

    join_runners(process, planned.rollout_id)
    [started] = events_of(harness, RolloutStarted)
    assert started.event == RolloutStarted(scheduled_at=start_at, started_at=restarted_at)
    assert started.event.lateness_seconds == 11.0


def test_a_scheduled_start_the_alarm_fires_late_records_its_lateness(
        harness: RolloutHarness, paused_scheduler: BackgroundScheduler) -> None:
    start_at = harness.clock.now() + timedelta(hours=1)
    planned = harness.start(start_at=start_at)
    process = engine_process(harness, paused_scheduler)
    process.tick()
    [job] = paused_scheduler.get_jobs()

    harness.clock.advance(3600 + 4.5)  # the scheduler fired 4.5 s after the time (a busy or suspended host)
    job.func(*job.args)

    join_runners(process, planned.rollout_id)
    [started] = events_of(harness, RolloutStarted)
    assert started.event == RolloutStarted(scheduled_at=start_at, started_at=start_at + timedelta(seconds=4.5))
    assert started.event.lateness_seconds == 4.5


def test_a_runner_that_waits_for_the_start_records_it_on_time_and_an_unscheduled_start_has_no_lateness(
        harness: RolloutHarness) -> None:
    start_at = harness.clock.now() + timedelta(hours=2)
    scheduled, _ = harness.start_and_run(names=("dma-1",), start_at=start_at)  # the fake waiter waits to the time
    unscheduled, _ = harness.start_and_run(names=("dma-2",), package=harness.upload("10.4.10.0-14900"))

    started = {r.stream_id: r.event for r in events_of(harness, RolloutStarted)}
    on_time = started[f"rollout-{scheduled.rollout_id}"]
    assert on_time == RolloutStarted(scheduled_at=start_at, started_at=start_at)
    assert on_time.lateness_seconds == 0.0
    now = started[f"rollout-{unscheduled.rollout_id}"]
    assert now.scheduled_at is None and now.started_at is not None and now.lateness_seconds is None


def test_two_ticks_and_a_duplicate_firing_drive_one_rollout_in_one_runner(
        harness: RolloutHarness, paused_scheduler: BackgroundScheduler) -> None:
    planned = harness.start()
    blocking = BlockingGateway(harness.gateway)
    process = engine_process(harness, paused_scheduler, blocking)

    process.tick()
    assert blocking.entered.wait(10)
    process.tick()
    process.drive(planned.rollout_id)  # the scheduled start firing late, on a rollout already driven

    assert len(runner_threads(planned.rollout_id)) == 1
    assert process.driving() == [planned.rollout_id]
    blocking.release.set()
    join_runners(process, planned.rollout_id)
    assert harness.service.rollout(planned.rollout_id).state is RolloutState.COMPLETED
    assert len(events_of(harness, RolloutStarted)) == 1
    succeeded = [(r.stream_id, r.event.step) for r in events_of(harness, StepSucceeded)]
    assert len(succeeded) == len(set(succeeded))
    assert sorted(harness.gateway.journal()) == sorted(set(harness.gateway.journal()))


def test_running_a_completed_rollout_again_appends_nothing(harness: RolloutHarness) -> None:
    planned, first = harness.start_and_run()
    assert first.state is RolloutState.COMPLETED
    head, journal = harness.head(), harness.gateway.journal()

    again = harness.run(planned.rollout_id)
    third = harness.run(planned.rollout_id)

    assert again.state is third.state is RolloutState.COMPLETED
    assert harness.head() == head
    assert harness.gateway.journal() == journal


def test_a_completed_rollout_is_neither_driven_nor_armed_by_a_tick(
        harness: RolloutHarness, paused_scheduler: BackgroundScheduler) -> None:
    planned, _ = harness.start_and_run()
    head = harness.head()
    process = engine_process(harness, paused_scheduler)

    process.tick()

    assert process.driving() == [] and paused_scheduler.get_jobs() == []
    assert runner_threads(planned.rollout_id) == []
    assert harness.head() == head


def test_a_scheduled_start_firing_after_its_rollout_was_cancelled_appends_nothing(
        harness: RolloutHarness, paused_scheduler: BackgroundScheduler) -> None:
    planned = harness.start(start_at=harness.clock.now() + timedelta(hours=1))
    process = engine_process(harness, paused_scheduler)
    process.tick()
    harness.service.control(CancelRollout(planned.rollout_id), actor=ACTOR)
    head = harness.head()
    process.tick()

    for job in paused_scheduler.get_jobs():  # what the scheduler would do once the start time comes
        harness.clock.advance(7200)
        job.func(*job.args)
    join_runners(process, planned.rollout_id)

    assert [type(r.event).__name__ for r in harness.store.read_all(after=head)] == []
    assert harness.service.rollout(planned.rollout_id).state is RolloutState.CANCELLED


def test_a_scheduled_start_fires_on_a_real_scheduler_and_the_rollout_completes(harness: RolloutHarness) -> None:
    class RealWaiter:
        def wait(self, seconds: float) -> None:
            time.sleep(min(seconds, 0.05))

    service = UpgradeService(harness.store, SystemClock(), UuidFactory(), harness.gateway)
    start_at = datetime.now(UTC) + timedelta(seconds=0.5)
    # on the system clock, a delayed start really waits (60 s): off here, the scheduled start is the point
    planned = service.start_rollout(harness.spec(start_at=start_at, overrides=OptionOverrides(delayed_start=False)),
                                    actor=ACTOR)
    process = EngineProcess(service, harness.gateway, RealWaiter(), poll_seconds=0.05,
                            scheduler=BackgroundScheduler(timezone="UTC"))
    stop = threading.Event()
    serving = threading.Thread(target=process.serve, args=(stop,), name="engine-serve", daemon=True)
    serving.start()
    try:
        deadline = time.monotonic() + 20
        while service.rollout(planned.rollout_id).state is not RolloutState.COMPLETED:
            assert time.monotonic() < deadline, "the scheduled rollout did not complete within 20 s"
            assert process.errors == []
            time.sleep(0.05)
    finally:
        stop.set()
        serving.join(10)
    assert not serving.is_alive()
    started = events_of(harness, RolloutStarted)
    assert len(started) == 1
    assert all(u.state is UpgradeState.COMPLETED for u in (service.upgrade(a.upgrade_id) for a in planned.agents))


# -- resumption --------------------------------------------------------------------------------------


def test_planned_resumptions_list_each_step_in_flight_with_its_idempotency_key(harness: RolloutHarness) -> None:
    planned, _ = crash_mid_install(harness)

    plans = planned_resumptions(harness.service)

    assert [(rollout.plan.rollout_id, rollout.state) for rollout, _ in plans] == [
        (planned.rollout_id, RolloutState.RUNNING)]
    resumptions = {r.agent: r for r in plans[0][1]}
    started = {r.stream_id: r.event for r in events_of(harness, StepStarted) if r.event.step is Step.INSTALL}
    for name in ("dma-1", "dma-2", BACKUP):
        upgrade_id = harness.upgrade_id(planned, name)
        key = started[upgrade_stream_id(upgrade_id)].idempotency_key
        assert resumptions[name] == Resumption(planned.rollout_id, name, "Installing", "install", key)
        assert key == f"{upgrade_id}:install:1"
        assert f"ask the agent about install (key {key}) before sending anything" in resumptions[name].describe()
    assert resumptions[MAIN] == Resumption(planned.rollout_id, MAIN, "Scheduled", None, None)
    assert resumptions[MAIN].describe() == "resume from Scheduled"


def test_a_resumed_engine_asks_about_the_step_in_flight_and_never_applies_it_twice(
        harness: RolloutHarness) -> None:
    planned, dying = crash_mid_install(harness)
    installs_before = [name for name, step in harness.gateway.journal() if step is Step.INSTALL]
    assert sorted(installs_before) == sorted(["dma-1", "dma-2", BACKUP])
    dying.dying = False
    dying.calls.clear()

    rollout = RolloutRunner(harness.service, dying, harness.waiter, poll_seconds=0.05).run(planned.rollout_id)

    assert rollout.state is RolloutState.COMPLETED
    for name in ("dma-1", "dma-2", BACKUP, MAIN):
        assert harness.steps_of(name).count(Step.INSTALL) == 1, name
    for name in ("dma-1", "dma-2", BACKUP):
        key = f"{harness.upgrade_id(planned, name)}:install:1"
        asked = [call for call in dying.calls if call[1] == key]
        assert asked[0] == ("step_status", key), asked  # asked before anything is sent again
    resumed = [r for r in events_of(harness, AgentUpgradeResumed)]
    assert sorted(r.stream_id for r in resumed) == sorted(
        upgrade_stream_id(harness.upgrade_id(planned, n)) for n in ("dma-1", "dma-2", BACKUP))
    assert all(r.event.step_in_flight is Step.INSTALL for r in resumed)


def test_a_resumed_engine_waits_for_an_agent_that_does_not_answer_about_its_step_in_flight(
        harness: RolloutHarness) -> None:
    planned = harness.start(names=("dma-1",))
    dying = DyingGateway(harness.gateway)
    with pytest.raises(EngineDied):
        RolloutRunner(harness.service, dying, harness.waiter, poll_seconds=0.05).run(planned.rollout_id)
    harness.gateway.unreachable("dma-1", times=1)  # still rebooting, say, when the engine comes back

    rollout = harness.run(planned.rollout_id)

    assert rollout.state is RolloutState.COMPLETED
    assert harness.steps_of("dma-1").count(Step.INSTALL) == 1  # the install that did succeed is not re-sent


class CrashOnceStore:
    """Delegates to an event store; the first append ``crashes_on`` matches raises instead (nothing written),
    as if the engine died between two of its appends."""

    def __init__(self, inner: Any, crashes_on: Callable[[str, Sequence[NewEvent]], bool]) -> None:
        self._inner = inner
        self._crashes_on = crashes_on
        self.crashed = False

    def append(self, stream_id: str, expected_version: int, events: Sequence[NewEvent]) -> Any:
        if not self.crashed and self._crashes_on(stream_id, events):
            self.crashed = True
            raise EngineDied(f"the engine died before appending to {stream_id}")
        return self._inner.append(stream_id, expected_version, events)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def run_until_crash(h: RolloutHarness, planned: RolloutPlanned, kind: type) -> None:
    """Drive the rollout with an engine that dies just before it appends the first ``kind`` event."""
    store = CrashOnceStore(h.store, lambda _stream, events: any(isinstance(e.event, kind) for e in events))
    dying = UpgradeService(store, h.clock, UuidFactory(), h.gateway)  # type: ignore[arg-type]
    with pytest.raises(EngineDied):
        RolloutRunner(dying, h.gateway, h.waiter, poll_seconds=0.05).run(planned.rollout_id)
    assert store.crashed


def test_an_engine_dying_between_the_install_outcome_and_the_inventory_update_still_updates_the_inventory(
        harness: RolloutHarness) -> None:
    planned = harness.start(names=("dma-1",))
    run_until_crash(harness, planned, AgentVersionChanged)
    assert harness.upgrade(planned, "dma-1").step_in_progress is Step.INSTALL  # the outcome waits for the version

    rollout = harness.run(planned.rollout_id)

    assert rollout.state is RolloutState.COMPLETED
    assert harness.steps_of("dma-1").count(Step.INSTALL) == 1
    assert harness.service.agent("dma-1").version == PACKAGE_VERSION


def test_an_engine_dying_between_completion_and_left_stopped_still_marks_the_agent_stopped(
        harness: RolloutHarness) -> None:
    planned = harness.start(names=("dma-1",), overrides=OptionOverrides(auto_start=False))
    run_until_crash(harness, planned, AgentLeftStopped)

    rollout = harness.run(planned.rollout_id)

    assert rollout.state is RolloutState.COMPLETED
    assert harness.upgrade(planned, "dma-1").manual_start_needed
    assert harness.service.agent("dma-1").stopped_by_upgrade == str(harness.upgrade_id(planned, "dma-1"))


def test_an_engine_dying_as_it_records_a_failed_attempt_records_neither_the_failure_nor_its_backoff(
        harness: RolloutHarness) -> None:
    planned = harness.start(names=("dma-1",))
    harness.gateway.fail("dma-1", Step.UPLOAD, times=1)
    run_until_crash(harness, planned, StepDelayed)
    assert not any(isinstance(r.event, StepFailed) for r in harness.upgrade_events(planned, "dma-1"))
    assert harness.upgrade(planned, "dma-1").step_in_progress is Step.UPLOAD

    rollout = harness.run(planned.rollout_id)

    assert rollout.state is RolloutState.COMPLETED
    assert harness.steps_of("dma-1").count(Step.UPLOAD) == 1


# -- taking many upgrades up at once -----------------------------------------------------------------


class StreamCountingStore:
    """Delegates to an event store; notes every stream read on its own."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.streams_read: list[str] = []

    def read_stream(self, stream_id: str, after_version: int = 0) -> Any:
        self.streams_read.append(stream_id)
        return self._inner.read_stream(stream_id, after_version)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def interrupt_every_upload(h: RolloutHarness) -> RolloutPlanned:
    """A rollout of the plain agents, all at once, whose engine died as each agent applied its upload."""
    planned = h.start(names=tuple(h.plain), max_concurrent=str(len(h.plain)))
    with pytest.raises(EngineDied):
        RolloutRunner(h.service, DyingGateway(h.gateway, dies_after=Step.UPLOAD), h.waiter,
                      poll_seconds=0.05).run(planned.rollout_id)
    assert all(h.upgrade(planned, name).step_in_progress is Step.UPLOAD for name in h.plain)
    return planned


def test_a_restarted_engine_sends_every_resumed_upgrade_its_first_command_before_any_second_one(
        make_harness: Callable[..., RolloutHarness], paused_scheduler: BackgroundScheduler) -> None:
    h = make_harness(plain_agents=6)
    planned = interrupt_every_upload(h)
    recording = DyingGateway(h.gateway)
    recording.dying = False
    process = EngineProcess(h.service, recording, h.waiter, poll_seconds=0.05, scheduler=paused_scheduler,
                            turns=Turns(1))

    process.tick()

    join_runners(process, planned.rollout_id)
    assert h.service.rollout(planned.rollout_id).state is RolloutState.COMPLETED
    upgrades_called = [key.split(":")[0] for _, key in recording.calls]
    first_calls = recording.calls[:len(h.plain)]
    assert len(set(upgrades_called[:len(h.plain)])) == len(h.plain)
    assert [kind for kind, _ in first_calls] == ["step_status"] * len(h.plain)
    assert all(h.steps_of(name).count(Step.UPLOAD) == 1 for name in h.plain)


def test_a_restarted_engine_folds_the_upgrades_it_resumes_from_one_read_not_one_read_each(
        make_harness: Callable[..., RolloutHarness], paused_scheduler: BackgroundScheduler) -> None:
    h = make_harness(plain_agents=4)
    planned = interrupt_every_upload(h)
    store = StreamCountingStore(h.store)
    service = UpgradeService(store, h.clock, UuidFactory(), h.gateway)  # type: ignore[arg-type]
    process = EngineProcess(service, h.gateway, h.waiter, poll_seconds=0.05, scheduler=paused_scheduler)

    process.tick()

    join_runners(process, planned.rollout_id)
    assert h.service.rollout(planned.rollout_id).state is RolloutState.COMPLETED
    assert [stream for stream in store.streams_read if stream.startswith("upgrade-")] == []


def test_a_preloaded_upgrade_is_handed_out_once_and_read_from_its_own_stream_after_that(
        harness: RolloutHarness) -> None:
    planned, _ = harness.start_and_run(names=("dma-1",))
    upgrade_id = harness.upgrade_id(planned, "dma-1")
    store = StreamCountingStore(harness.store)
    preloaded = PreloadedUpgrades(UpgradeService(store, harness.clock, UuidFactory()))  # type: ignore[arg-type]
    preloaded.load([upgrade_id])

    first = preloaded.take(upgrade_id)
    assert store.streams_read == []
    second = preloaded.take(upgrade_id)

    assert store.streams_read == [upgrade_stream_id(upgrade_id)]
    assert first is not second
    assert first.state is second.state is UpgradeState.COMPLETED
    assert first.version == second.version == len(harness.upgrade_events(planned, "dma-1"))


def test_a_later_tick_leaves_an_armed_start_alone_and_disarms_the_start_of_a_rollout_cancelled_since(
        make_harness: Callable[..., RolloutHarness], paused_scheduler: BackgroundScheduler) -> None:
    harness = make_harness(extra_agents=[AgentSpec("dma-south", "10.0.1.1", cluster="south")])
    kept = harness.start(start_at=harness.clock.now() + timedelta(hours=2))
    cancelled = harness.start(cluster="south", package=harness.upload("10.4.10.0-14900"),
                              start_at=harness.clock.now() + timedelta(hours=3))
    process = engine_process(harness, paused_scheduler)
    process.tick()
    armed = {job.id: job for job in paused_scheduler.get_jobs()}
    harness.service.control(CancelRollout(cancelled.rollout_id), actor=ACTOR)

    process.tick()

    jobs = paused_scheduler.get_jobs()
    assert [job.id for job in jobs] == [f"start-{kept.rollout_id}"]
    assert jobs[0] is armed[f"start-{kept.rollout_id}"]  # not added again


# -- the CLI -----------------------------------------------------------------------------------------


def test_upgrade_start_at_a_past_time_starts_now_without_a_start_time(
        harness: RolloutHarness, db_url: str, tmp_path: Path) -> None:
    assert harness.package is not None
    result = run_cli("upgrade", "start", "--package", harness.package.sha256, "--agent", "dma-1",
                     "--at", "2020-01-01T00:00:00Z", database_url=db_url,
                     env={**WIDE, "DMA_UPGRADE_DATA_DIR": str(tmp_path / "data")})

    assert result.returncode == 0, result.stdout + result.stderr
    assert "--at 2020-01-01T00:00:00+00:00 is in the past: the rollout starts now" in result.stdout
    plans = [r.event for r in events_of(harness, RolloutPlanned)]
    assert len(plans) == 1
    assert plans[0].start_at is None
    assert f"Rollout {plans[0].rollout_id} started" in result.stdout


def test_upgrade_start_at_garbage_is_one_line_exit_2(tmp_path: Path) -> None:
    result = run_cli("upgrade", "start", "--package", "abcdef12", "--agent", "dma-1", "--at", "next tuesday",
                     env={"DMA_UPGRADE_DATA_DIR": str(tmp_path / "data")})

    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error:") and "--at" in lines[0] and "next tuesday" in lines[0]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "data" / "dma-upgrade.db").exists() or result.stdout == ""


def test_recover_dry_run_lists_the_unfinished_rollout_and_what_each_agent_would_do(
        harness: RolloutHarness, db_url: str, tmp_path: Path) -> None:
    env = {**WIDE, "DMA_UPGRADE_DATA_DIR": str(tmp_path / "data")}
    planned, _ = crash_mid_install(harness)
    head = harness.head()

    result = run_cli("recover", "--dry-run", database_url=db_url, env=env)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "Recovery plan (dry run)" in result.stdout
    rows = [line for line in result.stdout.splitlines() if str(planned.rollout_id) in line]
    assert len(rows) == 4, result.stdout
    for name in ("dma-1", "dma-2", BACKUP):
        key = f"{harness.upgrade_id(planned, name)}:install:1"
        row = next(line for line in rows if f" {name} " in line)
        assert "Running" in row and "resume from Installing: ask the agent about install" in row
        assert key in row
    assert "resume from Scheduled" in next(line for line in rows if f" {MAIN} " in line)
    assert harness.head() == head  # a dry run appends nothing

    refused = run_cli("recover", database_url=db_url, env=env)
    assert refused.returncode == 2 and "--dry-run" in refused.stderr


def test_recover_dry_run_with_nothing_unfinished_says_so(
        harness: RolloutHarness, db_url: str, tmp_path: Path) -> None:
    harness.start_and_run()
    result = run_cli("recover", "--dry-run", database_url=db_url,
                     env={**WIDE, "DMA_UPGRADE_DATA_DIR": str(tmp_path / "data")})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "nothing to resume"


def test_recover_dry_run_shows_a_scheduled_start_that_came_due_as_overdue_and_one_to_come_as_scheduled(
        make_harness: Callable[..., RolloutHarness], db_url: str, tmp_path: Path) -> None:
    harness = make_harness(extra_agents=[AgentSpec("dma-south", "10.1.0.1", cluster="south")])
    # ``recover`` reads the wall clock: plan on a fake clock two hours behind it, one start an hour ago, one tomorrow
    harness.clock.current = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    overdue_at = harness.clock.now() + timedelta(hours=1)
    later_at = harness.clock.now() + timedelta(days=1)
    overdue = harness.start(start_at=overdue_at)
    later = harness.start(names=("dma-south",), start_at=later_at, package=harness.upload("10.4.10.0-14900"))
    head = harness.head()

    before = datetime.now(UTC)
    result = run_cli("recover", "--dry-run", database_url=db_url,
                     env={**WIDE, "DMA_UPGRADE_DATA_DIR": str(tmp_path / "data")})
    after = datetime.now(UTC)

    assert result.returncode == 0, result.stdout + result.stderr
    [overdue_row] = [line for line in result.stdout.splitlines() if str(overdue.rollout_id) in line]
    [later_row] = [line for line in result.stdout.splitlines() if str(later.rollout_id) in line]
    found = re.search(r"overdue: scheduled (\S+), (\d+) s ago; starts as soon as an engine runs", overdue_row)
    assert found is not None and "Planned" in overdue_row, result.stdout
    assert found.group(1) == f"{overdue_at:%Y-%m-%dT%H:%M:%SZ}"
    assert (before - overdue_at).total_seconds() - 1 <= int(found.group(2)) <= (after - overdue_at).total_seconds() + 1
    assert f"scheduled for {later_at:%Y-%m-%dT%H:%M:%SZ}" in later_row and "overdue" not in later_row
    assert harness.head() == head  # a dry run appends nothing


# -- agents over HTTP that break or lie ----------------------------------------------------------------


def misbehaving_agent(status: int, body: bytes, media_type: str) -> tuple[FastAPI, list[str]]:
    """A tiny FastAPI app answering every request with the same broken answer; lists what it was asked."""
    app = FastAPI()
    asked: list[str] = []

    @app.api_route("/{path:path}", methods=["GET", "POST"])
    async def anything(path: str, request: Request) -> Response:
        asked.append(f"{request.method} /{path}")
        return Response(content=body, status_code=status, media_type=media_type)

    return app, asked


@pytest.mark.parametrize(("status", "body", "media_type", "reason"), [
    (500, b"Internal Server Error", "text/plain", 'the agent answered HTTP 500: agent said: "Internal Server Error"'),
    (200, b"<html>hello</html>", "text/html", "the agent answered HTTP 200 with a body that is not protocol JSON"),
], ids=["http-500", "garbage"])
def test_an_agent_answering_500_or_garbage_leaves_its_step_in_doubt_and_is_only_asked_never_sent_a_new_key(
        db_url: str, clock: FakeClock, tmp_path: Path, status: int, body: bytes, media_type: str,
        reason: str) -> None:
    """Neither answer says whether the agent applied the step: the engine records the doubt once and then only
    asks about that key (an operator's ``upgrade resolve`` or the agent's recovery ends it), never re-sends."""
    app, asked = misbehaving_agent(status, body, media_type)
    stop = threading.Event()
    with serve_in_thread(app) as address, HttpAgentGateway(retries=0) as gateway:
        h = RolloutHarness(db_url, clock, tmp_path, extra_agents=[AgentSpec("dma-http", address, cluster=None)])
        try:
            planned = h.start(names=("dma-http",))
            runner = RolloutRunner(h.service, gateway, h.waiter, poll_seconds=0.05, stopping=stop)
            driving = threading.Thread(target=_run_until_stopped, args=(runner, planned.rollout_id), daemon=True)
            driving.start()
            deadline = time.monotonic() + 30
            while sum(line.startswith("GET") for line in asked) < 3:
                assert time.monotonic() < deadline and driving.is_alive(), asked
                time.sleep(0.01)
            stop.set()
            driving.join(timeout=30)
            assert not driving.is_alive()

            upgrade = h.upgrade(planned, "dma-http")
            key = upgrade.idempotency_key(Step.UPLOAD, 1)
            assert (upgrade.state, upgrade.step_in_progress, upgrade.in_doubt) == (UpgradeState.SCHEDULED, Step.UPLOAD,
                                                                                   True)
            events = [r.event for r in h.upgrade_events(planned, "dma-http")]
            assert not any(isinstance(e, StepFailed) for e in events)
            doubts = [e for e in events if isinstance(e, StepInDoubt)]
            assert len(doubts) == 1 and reason in doubts[0].reason
            assert asked[0] == f"POST /steps/{key}"
            assert set(asked[1:]) == {f"GET /steps/{key}"}  # asked again and again, never sent under a new key
            assert h.service.agent("dma-http").version == "10.4.0.0-14112"
        finally:
            stop.set()
            h.close()


def _run_until_stopped(runner: RolloutRunner, rollout_id: UUID) -> None:
    with contextlib.suppress(Stopping):
        runner.run(rollout_id)


def test_an_agent_reporting_another_version_after_the_install_fails_naming_both_versions(
        harness: RolloutHarness) -> None:
    reported = "10.4.5.0-14500"
    harness.gateway.report_version("dma-1", reported)
    planned = harness.start(names=("dma-1",))
    with serve_simulation(harness.gateway, ["dma-1"]) as routes, \
            httpx.Client(transport=LoopbackRoutes(routes)) as client, \
            HttpAgentGateway(retries=0, client=client) as gateway:
        rollout = RolloutRunner(harness.service, gateway, harness.waiter, poll_seconds=0.05).run(planned.rollout_id)

    upgrade = harness.upgrade(planned, "dma-1")
    assert upgrade.state is UpgradeState.FAILED
    assert upgrade.last_error == (f"agent dma-1 reports version {reported} after the install, "
                                  f"expected {PACKAGE_VERSION}")
    assert rollout.state is RolloutState.FAILED
    assert harness.service.agent("dma-1").version == reported
    assert harness.steps_of("dma-1") == [Step.UPLOAD, Step.STOP_SNMP, Step.INSTALL]


class _OutageIndex:
    """An index whose database is down for its first ``outages`` looks, then empty; stops the engine after."""

    def __init__(self, outages: int, stop: threading.Event) -> None:
        self.looks = 0
        self.outages = outages
        self.stop = stop

    def scheduled_starts(self) -> dict[UUID, datetime]:
        self.looks += 1
        if self.looks <= self.outages:
            raise StoreUnavailable("cannot reach the database: connection refused")
        self.stop.set()
        return {}

    def active(self) -> list[tuple[UUID, RolloutState]]:
        return []


def test_a_database_outage_skips_looks_for_work_instead_of_ending_the_engine(
        harness: RolloutHarness, caplog: pytest.LogCaptureFixture) -> None:
    stop = threading.Event()
    index = _OutageIndex(outages=2, stop=stop)
    process = EngineProcess(harness.service, harness.gateway, harness.waiter, poll_seconds=0.0,
                            scheduler=BackgroundScheduler(timezone="UTC"), index=index)

    process.serve(stop)  # returns once the index, after two failed looks, has stopped it

    assert index.looks == 3
    assert sum("the database cannot be reached" in r.getMessage() for r in caplog.records) == 2


def test_the_projection_index_finds_every_planned_running_and_paused_rollout_and_no_ended_one(
        make_harness: Callable[..., RolloutHarness], clock: FakeClock) -> None:
    harness = make_harness(extra_agents=[AgentSpec(f"dma-{n}", f"10.0.1.{n}", cluster=f"c{n}") for n in (3, 4, 5)])
    done, _ = harness.start_and_run(names=["dma-1"])
    cancelled = harness.start(names=["dma-2"], package=harness.upload("10.4.10.0-14900"))
    harness.service.control(CancelRollout(cancelled.rollout_id), actor=ACTOR)
    later = harness.start(names=["dma-4"], package=harness.upload("10.4.10.0-14901"),
                          start_at=clock.now() + timedelta(hours=1))
    paused = harness.start(names=["dma-5"], package=harness.upload("10.4.10.0-14902"))
    harness.service.append(rollout_stream_id(paused.rollout_id), 1, [RolloutStarted(started_at=clock.now())],
                           actor=ACTOR)
    harness.service.control(PauseRollout(paused.rollout_id), actor=ACTOR)
    running = harness.start(names=["dma-3"], package=harness.upload("10.4.10.0-14903"))
    harness.service.append(rollout_stream_id(running.rollout_id), 1, [RolloutStarted(started_at=clock.now())],
                           actor=ACTOR)
    index = ProjectionIndex(ProjectionRunner(harness.engine, harness.store, clock, all_projections()), harness.engine)

    assert sorted(index.active()) == sorted([(later.rollout_id, RolloutState.PLANNED),
                                             (paused.rollout_id, RolloutState.PAUSED),
                                             (running.rollout_id, RolloutState.RUNNING)])
    assert index.scheduled_starts() == {later.rollout_id: clock.now() + timedelta(hours=1)}
    assert {r.plan.rollout_id for r in harness.service.rollouts() if r.state not in ACTIVE_STATES} \
        == {done.rollout_id, cancelled.rollout_id}
