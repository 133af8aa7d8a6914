"""The engine process survives SIGKILL: a rollout over real HTTP agents completes, every step applied once.

Five ``dma-upgrade agent-sim`` processes (three plain agents and a main/backup failover pair) are
registered through the CLI; a rollout is started without ``--wait``; then ``dma-upgrade serve`` (HTTP
gateway) is started and SIGKILLed again and again at seeded random moments — once while an agent is
Installing and once just after the switchover of the pair, found by tailing the event store — and
started anew each time, until the rollout completes. Then the CLI, the agents' own journals and the
audit chain must all agree that every agent was upgraded exactly once.

The inventory check comes last: the engine records an agent's new version before the install's success,
so a kill between the two is mended by the resumed step (pinned deterministically by
``tests/integration/test_engine_process.py``) and every agent must show the new version.
"""

from __future__ import annotations

import random
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest

from dma_upgrade.engine.upgrade_events import (
    InstallPhaseReported,
    StepFailed,
    StepInDoubt,
    StepStarted,
    StepStatusLearned,
    StepSucceeded,
)
from tests.e2e.engine_cluster import (
    BACKUP,
    NEW,
    ClusterRig,
    EngineProcessRunner,
    StoreWatch,
    is_progress,
    is_step,
)

pytestmark = [pytest.mark.slow, pytest.mark.skipif(sys.platform == "win32", reason="uses SIGKILL")]

STEP_SECONDS = 0.6
"""Each agent step takes this long (an install spreads it over its twelve phases)."""
MIN_KILLS = 5
SEED = 20261130
TOTAL_SECONDS = 180.0
POLL = 0.02
T = TypeVar("T")

INSTALLING = "while an agent is Installing"
SWITCHED = "just after the switchover"
RANDOM = "at random"


@dataclass(frozen=True)
class Kill:
    life: int
    reason: str
    position: int
    installing: frozenset[str]


@pytest.fixture
def rig(db_url: str, tmp_path: Path) -> Iterator[ClusterRig]:
    """Five agent simulators registered in the inventory, a package uploaded, a rollout started (not run)."""
    cluster = ClusterRig(db_url, tmp_path, step_seconds=STEP_SECONDS)
    try:
        cluster.start_rollout(cluster.prepare())
        yield cluster
    finally:
        cluster.stop_agents()


@pytest.fixture
def watch(rig: ClusterRig) -> Iterator[StoreWatch]:
    tail = StoreWatch(rig.database_url)
    tail.poll()
    yield tail
    tail.close()


@pytest.fixture
def engine(rig: ClusterRig) -> Iterator[EngineProcessRunner]:
    runner = EngineProcessRunner(rig.engine_env(), rig.log_dir, poll_seconds=0.2)
    yield runner
    runner.stop()


def _crash_until_complete(watch: StoreWatch, engine: EngineProcessRunner, rng: random.Random) -> list[Kill]:
    """Start the engine, kill it at a chosen moment, start it again ... until the rollout ended."""
    kills: list[Kill] = []
    wanted = {INSTALLING, SWITCHED}
    deadline = time.monotonic() + TOTAL_SECONDS

    def overdue() -> str:
        return f"the rollout did not end within {TOTAL_SECONDS:g} s; kills so far {kills}\n{engine.logs()}"

    while not watch.rollout_ended():
        engine.start()
        progress = 0
        target = rng.randint(1, 5)
        pause = rng.uniform(0.0, 0.1)
        reason: str | None = None
        while reason is None:
            assert time.monotonic() < deadline, overdue()
            assert engine.alive(), f"the engine exited by itself\n{engine.logs()}"
            new = watch.poll()
            if watch.rollout_ended():
                break
            progress += sum(map(is_progress, new))
            if SWITCHED in wanted and any(is_step(r, StepSucceeded, "switch_over") for r in new):
                reason = SWITCHED
            elif INSTALLING in wanted and progress and watch.installing():
                reason = INSTALLING
            elif len(kills) < MIN_KILLS and progress >= target:
                time.sleep(pause)
                late = watch.poll()
                reason = SWITCHED if SWITCHED in wanted and any(
                    is_step(r, StepSucceeded, "switch_over") for r in late) else RANDOM
            else:
                time.sleep(POLL)
        if reason is None:
            break  # the rollout ended in this life: leave the engine running, the caller stops it
        installing = frozenset(watch.installing())
        engine.kill()
        wanted.discard(reason)
        kills.append(Kill(engine.lives, reason, watch.position, installing))
    return kills


def _steps_applied(journal: list[dict[str, str]]) -> Counter[str]:
    return Counter(entry["step"] for entry in journal)


def test_sigkilled_engine_completes_the_rollout_applying_every_step_once(
        rig: ClusterRig, watch: StoreWatch, engine: EngineProcessRunner) -> None:
    rng = random.Random(SEED)

    kills = _crash_until_complete(watch, engine, rng)
    assert engine.stop() == 0, engine.logs()

    summary = f"kills: {kills}\n{engine.logs()}"
    print(f"{len(kills)} kills: " + ", ".join(f"life {k.life} {k.reason} at {k.position}" for k in kills))
    assert "Traceback" not in engine.logs(), engine.logs()
    assert len(kills) >= MIN_KILLS, summary
    reasons = {kill.reason for kill in kills}
    assert {INSTALLING, SWITCHED} <= reasons, summary
    assert next(k for k in kills if k.reason == INSTALLING).installing, summary

    progress = rig.progress()
    assert len(progress) == 1, progress
    rollout = progress[0]
    assert rollout["state"] == "Completed", summary
    assert {a["agent"]: a["state"] for a in rollout["agents"]} == dict.fromkeys(rig.sims, "Completed")
    assert {a["agent"]: a["version_after"] for a in rollout["agents"]} == dict.fromkeys(rig.sims, NEW)
    assert any(a["resumes"] > 0 for a in rollout["agents"]), rollout
    assert {a["agent"]: a["resumes"] for a in rollout["agents"] if a["resumes"]} == \
        {name: count for name, count in watch.resumes().items() if count}

    planned = watch.planned_steps()
    assert "switch_over" in planned[BACKUP]
    assert planned[BACKUP].index("start") < planned[BACKUP].index("switch_over"), planned[BACKUP]
    for name, sim in rig.sims.items():
        journal = sim.journal()
        assert _steps_applied(journal) == Counter(planned[name]), (name, journal, summary)
        assert [entry["step"] for entry in journal] == list(planned[name]), (name, journal)  # in the safe order
        assert len({entry["key"] for entry in journal}) == len(journal), (name, journal)
        assert {entry["package_version"] for entry in journal} == {NEW}
        assert sim.starts == 1  # the agents themselves never restarted: every step was the engine's doing

    succeeded = Counter((r.stream_id, r.event.step.value) for r in watch.events  # type: ignore[attr-defined]
                        if isinstance(r.event, StepSucceeded))
    assert set(succeeded.values()) == {1}, succeeded

    verify = rig.cli("audit", "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "hash chain intact" in verify.stdout

    rig.ok("projections", "rebuild")
    assert rig.progress() == progress

    assert rig.agent_versions() == dict.fromkeys(rig.sims, NEW), summary


def test_an_agent_sigkilled_mid_install_and_restarted_is_installed_once(
        rig: ClusterRig, watch: StoreWatch, engine: EngineProcessRunner) -> None:
    victim = rig.sims["dma-02"]
    engine.start()
    deadline = time.monotonic() + TOTAL_SECONDS
    stream: str | None = None
    while True:
        assert time.monotonic() < deadline, engine.logs()
        assert engine.alive(), engine.logs()
        watch.poll()
        stream = next((s for s, name in watch.agent_of().items() if name == victim.name), None)
        if stream and any(r.stream_id == stream and isinstance(r.event, InstallPhaseReported) for r in watch.events):
            break
        time.sleep(POLL)
    assert any(r.stream_id == stream and is_step(r, StepStarted, "install") for r in watch.events)
    assert not any(r.stream_id == stream and is_step(r, StepSucceeded, "install") for r in watch.events), \
        "the install ended before the agent could be killed; slow the steps down"

    victim.kill()
    time.sleep(1.0)
    victim.start()

    while not watch.rollout_ended():
        assert time.monotonic() < deadline, engine.logs()
        assert engine.alive(), engine.logs()
        watch.poll()
        time.sleep(0.1)
    assert engine.stop() == 0, engine.logs()
    assert "Traceback" not in engine.logs() + victim.log(), engine.logs()

    progress = rig.progress()[0]
    assert progress["state"] == "Completed", engine.logs()
    assert {a["agent"]: a["state"] for a in progress["agents"]} == dict.fromkeys(rig.sims, "Completed")
    assert rig.agent_versions() == dict.fromkeys(rig.sims, NEW)
    journal = victim.journal()
    assert _steps_applied(journal)["install"] == 1, journal
    assert _steps_applied(journal) == Counter(watch.planned_steps()[victim.name]), journal
    assert victim.starts == 2
    verify = rig.cli("audit", "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_an_agent_frozen_mid_install_is_asked_before_anything_is_sent_again_and_installs_once(
        rig: ClusterRig, watch: StoreWatch, tmp_path: Path) -> None:
    """SIGSTOP an agent mid-install until the engine's calls time out: the step is in doubt, the engine asks
    the agent (and keeps asking while it cannot), and after SIGCONT the agent's journal holds each step once."""
    victim = rig.sims["dma-02"]
    env = {**rig.engine_env(), "DMA_UPGRADE_AGENT_TIMEOUT_SECONDS": "1", "DMA_UPGRADE_AGENT_RETRY_SECONDS": "1",
           "DMA_UPGRADE_AGENT_RETRY_CAP_SECONDS": "0.5"}
    engine = EngineProcessRunner(env, rig.log_dir, poll_seconds=0.2)
    try:
        engine.start()
        deadline = time.monotonic() + TOTAL_SECONDS
        stream = _wait_for(watch, engine, deadline, lambda: _install_reported(watch, victim.name))
        victim.freeze()
        try:
            _wait_for(watch, engine, deadline, lambda: any(
                r.stream_id == stream and isinstance(r.event, StepInDoubt) for r in watch.events) or None)
        finally:
            victim.thaw()
        _wait_for(watch, engine, deadline, lambda: watch.rollout_ended() or None)
        assert engine.stop() == 0, engine.logs()
    finally:
        engine.stop()
    assert "Traceback" not in engine.logs(), engine.logs()
    ours = [r.event for r in watch.events if r.stream_id == stream]
    assert any(isinstance(e, StepStatusLearned) for e in ours), ours
    assert not any(isinstance(e, StepFailed) for e in ours), ours  # a timeout is never a failed attempt
    assert [e.attempt for e in ours if isinstance(e, StepStarted) and e.step.value == "install"] == [1]
    progress = rig.progress()[0]
    assert progress["state"] == "Completed", engine.logs()
    journal = victim.journal()
    assert _steps_applied(journal) == Counter(watch.planned_steps()[victim.name]), journal
    assert len({entry["key"] for entry in journal}) == len(journal), journal
    assert victim.starts == 1


def _install_reported(watch: StoreWatch, agent: str) -> str | None:
    """The agent's upgrade stream once its install has reported a phase."""
    stream = next((s for s, name in watch.agent_of().items() if name == agent), None)
    if stream and any(r.stream_id == stream and isinstance(r.event, InstallPhaseReported) for r in watch.events):
        return stream
    return None


def _wait_for(watch: StoreWatch, engine: EngineProcessRunner, deadline: float, found: Callable[[], T | None]) -> T:
    while True:
        assert time.monotonic() < deadline, engine.logs()
        assert engine.alive(), engine.logs()
        watch.poll()
        value = found()
        if value is not None:
            return value
        time.sleep(POLL)
