"""Several engine processes sharing one database through leases (in one test process, each with its own
holder identity): a rollout's upgrades are shared out and each step is applied once; a runner whose lease
is taken over stops before its next command, and its late append fails on the stream version."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import timedelta
from functools import partial
from pathlib import Path

import pytest

from dma_upgrade.adapters.clock import SystemClock
from dma_upgrade.adapters.runtime.engine_process import EngineProcess
from dma_upgrade.adapters.runtime.rollout_runner import RolloutRunner
from dma_upgrade.adapters.sql.leases import ROLLOUT, UPGRADE, SqlLeases
from dma_upgrade.engine.agent_upgrade import upgrade_stream_id
from dma_upgrade.engine.errors import ConcurrencyConflict, LeaseLost
from dma_upgrade.engine.ports import AgentAddress, PackageRef, PhaseReporter, StepOutcome
from dma_upgrade.engine.rollout import RolloutState
from dma_upgrade.engine.rollout_events import RolloutPlanned, RolloutStarted
from dma_upgrade.engine.upgrade_events import AgentUpgradeScheduled, Step
from dma_upgrade.engine.upgrade_machine import UpgradeState
from tests.conftest import FakeClock
from tests.integration.rollout_harness import RolloutHarness

AGENTS = 30
DEADLINE = 120.0


@pytest.fixture
def harness(db_url: str, clock: FakeClock, tmp_path: Path) -> Iterator[RolloutHarness]:
    h = RolloutHarness(db_url, clock, tmp_path, plain_agents=AGENTS)
    yield h
    h.close()


def eventually(check: Callable[[], bool], what: str) -> None:
    """Wait (polling) until ``check`` holds; fail naming ``what`` after the deadline."""
    deadline = time.monotonic() + DEADLINE
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def run_until_completed(h: RolloutHarness, planned: RolloutPlanned, loops: list[Callable[[threading.Event], None]],
                        engines: list[EngineProcess]) -> None:
    """Run ``loops`` (each until the event passed to it is set) in threads until the rollout completed and no
    engine drives it any more."""
    stop = threading.Event()
    threads = [threading.Thread(target=loop, args=(stop,)) for loop in loops]
    for thread in threads:
        thread.start()
    try:
        eventually(lambda: h.service.rollout(planned.rollout_id).state is RolloutState.COMPLETED,
                   "the rollout to complete")
        eventually(lambda: not any(e.driving() for e in engines), "the rollout's runner to end")
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)


def leased_engine(h: RolloutHarness, name: str, capacity: int) -> EngineProcess:
    leases = SqlLeases(h.engine, SystemClock(), owner=f"test/{name}", seconds=30)
    return EngineProcess(h.service, h.gateway, h.waiter, poll_seconds=0.05, leases=leases, capacity=capacity)


def test_three_engines_share_out_one_rollout_and_each_step_reaches_each_agent_once(harness: RolloutHarness) -> None:
    planned = harness.start(max_concurrent="100%")
    engines = [leased_engine(harness, f"e{i}", capacity=4) for i in range(3)]
    run_until_completed(harness, planned, [e.serve for e in engines], engines)
    assert [e.errors for e in engines] == [[], [], []]
    assert {harness.upgrade(planned, a.name).state for a in planned.agents} == {UpgradeState.COMPLETED}
    journal = Counter(harness.gateway.journal())
    assert journal and set(journal.values()) == {1}, "each step applied once per agent"
    drivers = {r.metadata.actor for r in harness.store.read_stream(f"rollout-{planned.rollout_id}")
               if r.metadata.actor.startswith("engine:")}
    assert drivers in ({"engine:test/e0"}, {"engine:test/e1"}, {"engine:test/e2"}), "one engine ran the rollout"
    # (another may claim its lease once more just as it ends, find it ended and record nothing)
    driven = [e.leases.claimed[UPGRADE] for e in engines if e.leases]
    assert sum(driven) == len(planned.agents) and sum(1 for n in driven if n) >= 2, driven
    with harness.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM leases").scalar() == 0, "ended work leaves no lease"


class TakeoverDuringInstall:
    """A gateway whose first install, sent by the stale holder, returns only after another engine took the
    upgrade over and recorded its own step: what a process paused past its lease sees when it wakes."""

    def __init__(self, h: RolloutHarness, takeover: Callable[[], None]) -> None:
        self._h = h
        self._takeover = takeover
        self.calls: list[Step] = []

    def perform(self, agent: AgentAddress, step: Step, idempotency_key: str, package: PackageRef,
                on_phase: PhaseReporter | None = None) -> StepOutcome:
        self.calls.append(step)
        if step is Step.INSTALL and self._takeover is not None:
            takeover, self._takeover = self._takeover, None  # type: ignore[assignment]
            takeover()
        return self._h.gateway.perform(agent, step, idempotency_key, package, None)

    def step_status(self, agent: AgentAddress, idempotency_key: str):  # type: ignore[no-untyped-def]
        return self._h.gateway.step_status(agent, idempotency_key)

    def identify(self, address: str):  # type: ignore[no-untyped-def]
        return self._h.gateway.identify(address)


def test_a_holder_whose_upgrade_was_taken_over_fails_its_append_and_stops_before_the_next_command(
        harness: RolloutHarness, clock: FakeClock) -> None:
    planned = harness.start(names=("dma-1",))
    upgrade_id = planned.agents[0].upgrade_id
    stale = SqlLeases(harness.engine, clock, owner="test/stale", seconds=10)
    fresh = SqlLeases(harness.engine, clock, owner="test/fresh", seconds=10)
    harness.service.append(f"rollout-{planned.rollout_id}", 1, harness.service.rollout(planned.rollout_id).start(),
                           actor="test")
    agent = planned.agents[0]  # scheduled and handed out as the rollout's runner does
    harness.service.append(upgrade_stream_id(upgrade_id), 0, [AgentUpgradeScheduled(
        upgrade_id=upgrade_id, rollout_id=planned.rollout_id, agent=agent.name, package_sha256=planned.package_sha256,
        target_version=planned.package_version, plan=agent.plan)], actor="test")
    stale.offer(planned.rollout_id, [upgrade_id])
    [held] = stale.claim(UPGRADE, limit=1)

    def takeover() -> None:
        clock.advance(11)  # the stale holder was paused past its lease: it expired
        [taken] = fresh.claim(UPGRADE, limit=1)
        upgrade = harness.service.upgrade(upgrade_id)
        harness.service.append(upgrade_stream_id(upgrade_id), upgrade.version, upgrade.resume_after_restart(),
                               actor="fresh")
        assert taken.token == held.token + 1
        held._lose()  # what its heartbeat finds at the next renewal

    gateway = TakeoverDuringInstall(harness, takeover)
    stale_runner = RolloutRunner(harness.service, gateway, harness.waiter, poll_seconds=0.01)
    before = len(harness.store.read_stream(upgrade_stream_id(upgrade_id)))
    with pytest.raises(LeaseLost):
        stale_runner.drive_handed_out(planned.rollout_id, upgrade_id, held)
    assert gateway.calls[-1] is Step.INSTALL, "no command after the install that outlived the lease"
    events = harness.store.read_stream(upgrade_stream_id(upgrade_id))
    assert [e.metadata.actor for e in events[before:]][-1] == "fresh", "the stale install's outcome was refused"
    with pytest.raises(ConcurrencyConflict):
        harness.service.append(upgrade_stream_id(upgrade_id), len(events) - 1,
                               harness.service.upgrade(upgrade_id).resume_after_restart(), actor="stale")


def test_a_rollout_already_run_by_a_live_engine_is_not_taken_up_by_another(harness: RolloutHarness) -> None:
    planned = harness.start()
    first, second = leased_engine(harness, "first", 4), leased_engine(harness, "second", 4)
    assert first.leases is not None and second.leases is not None
    [held] = first.leases.claim(ROLLOUT, [planned.rollout_id])
    second.tick()
    assert second.driving() == [] and second.leases.claimed[ROLLOUT] == 0
    first.leases.release(held, done=False)
    second.tick()
    assert second.driving() == [planned.rollout_id]
    run_until_completed(harness, planned, [second.serve], [second])
    assert second.errors == [] and first.leases.claimed[ROLLOUT] == 1


def test_a_scheduled_start_armed_in_every_engine_fires_in_one(harness: RolloutHarness, clock: FakeClock) -> None:
    planned = harness.start(start_at=clock.now() + timedelta(hours=1))
    engines = [leased_engine(harness, f"e{i}", 4) for i in range(3)]
    for engine in engines:
        engine.scheduler.start(paused=True)
    try:
        for engine in engines:
            engine.tick()
        assert all(engine.scheduler.get_job(f"start-{planned.rollout_id}") is not None for engine in engines), \
            "every engine arms the start"
        clock.advance(3600)
        due = threading.Barrier(len(engines))

        def fire(engine: EngineProcess) -> None:
            due.wait()
            engine.fire(planned.rollout_id)

        firing = [threading.Thread(target=fire, args=(engine,)) for engine in engines]
        for thread in firing:
            thread.start()
        for thread in firing:
            thread.join(30)
        assert sorted(len(engine.driving()) for engine in engines) == [0, 0, 1], "one engine took the start"
        drivers = [e.drivers for e in engines if e.drivers is not None]
        run_until_completed(harness, planned, [partial(d.serve, poll_seconds=0.05) for d in drivers], engines)
    finally:
        for engine in engines:
            engine.scheduler.shutdown(wait=False)
    started = [r for r in harness.store.read_stream(f"rollout-{planned.rollout_id}")
               if isinstance(r.event, RolloutStarted)]
    assert len(started) == 1
    assert [e.errors for e in engines] == [[], [], []]
