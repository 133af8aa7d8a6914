"""Three ``dma-upgrade serve`` processes on one PostgreSQL database drive a rollout of 32 agents: the one
running the rollout is SIGKILLed mid-rollout and another is SIGSTOPped for longer than its leases last.
The survivors take the work over; every agent ends Completed with each step applied once in its journal,
the global order has no gap, and ``audit verify`` passes.

The agents are simulated in this test process (each on a port of its own, over the HTTP agent protocol),
so their journals outlive every engine; the engines are real subprocesses with short leases.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from dma_upgrade.adapters.agents.simulated_gateway import SimulatedAgent, SimulatedAgentGateway, modern_facts
from dma_upgrade.adapters.agents.simulator import serve_simulation
from dma_upgrade.adapters.bootstrap import bootstrap
from dma_upgrade.adapters.settings import Settings
from dma_upgrade.engine.rollout_events import RolloutCompleted
from dma_upgrade.engine.upgrade_events import AgentUpgradeCompleted, AgentUpgradeScheduled, Step
from dma_upgrade.engine.upgrade_machine import UpgradeState
from tests.e2e.cli import run_cli
from tests.e2e.engine_cluster import CLUSTER, NEW, OLD, EngineProcessRunner, StoreWatch

pytestmark = [pytest.mark.slow, pytest.mark.postgres,
              pytest.mark.skipif(sys.platform == "win32", reason="uses SIGKILL and SIGSTOP")]

AGENTS = 48
"""Enough that work is left for the survivors after the takeover, however fast the engines are."""
STEP_SECONDS = 0.25
LEASE_SECONDS = 3.0
DEADLINE = 240.0


def eventually(check: Callable[[], bool], what: Callable[[], str], timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what()}"
        time.sleep(0.05)


@pytest.fixture
def agents() -> Iterator[tuple[SimulatedAgentGateway, dict[str, str]]]:
    """32 simulated agents, each served over HTTP on its own port; yields the simulation and their addresses."""
    specs = [SimulatedAgent(name=f"dma-{i:02d}", address=f"10.20.0.{i}:8080", cluster=CLUSTER, version=OLD,
                            facts=modern_facts(OLD)) for i in range(1, AGENTS + 1)]
    simulation = SimulatedAgentGateway(specs, sleeper=time.sleep, step_seconds=dict.fromkeys(Step, STEP_SECONDS))
    with serve_simulation(simulation, [s.name for s in specs]) as routes:
        yield simulation, {s.name: routes[s.address] for s in specs}


def test_three_engines_survive_a_sigkill_and_a_sigstop_and_apply_every_step_once(
        postgres_url: str, tmp_path: Path, agents: tuple[SimulatedAgentGateway, dict[str, str]]) -> None:
    simulation, addresses = agents
    data_dir = tmp_path / "data"
    env = {"DMA_UPGRADE_DATA_DIR": str(data_dir), "DMA_UPGRADE_ACTOR": "failover-test"}
    container = bootstrap(Settings(database_url=postgres_url, data_dir=data_dir))
    try:
        service = container.service
        for name, address in addresses.items():
            service.register_agent(name=name, address=address, version=OLD, cluster=CLUSTER, failover_partner=None,
                                   failover_role=None, facts=modern_facts(OLD), actor="failover-test")
    finally:
        container.close()
    built = run_cli("packages", "build", "--version", NEW, "--output", str(tmp_path / "package"),
                    database_url=postgres_url, env=env)
    package = built.stdout.strip().splitlines()[-1]
    assert run_cli("packages", "upload", package, database_url=postgres_url, env=env).returncode == 0

    engine_env = {**os.environ, **env, "DMA_UPGRADE_DATABASE_URL": postgres_url, "DMA_UPGRADE_AGENT_GATEWAY": "http",
                  "DMA_UPGRADE_LEASE_SECONDS": str(LEASE_SECONDS), "DMA_UPGRADE_ENGINE_CAPACITY": "4"}
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    engines = [EngineProcessRunner(engine_env, log_dir, poll_seconds=0.2, name=f"engine-{i}") for i in range(3)]
    watch = StoreWatch(postgres_url)
    leases = sa.create_engine(sa.make_url(postgres_url))

    def logs() -> str:
        return "\n".join(engine.logs() for engine in engines)

    def holders(kind: str) -> Counter[int]:
        """Engine pid -> leases of ``kind`` it holds now."""
        with leases.connect() as conn:
            owners = conn.execute(sa.text("SELECT owner FROM leases WHERE kind = :kind AND owner IS NOT NULL"),
                                  {"kind": kind}).scalars().all()
        return Counter(int(owner.split("/")[1]) for owner in owners)

    def by_pid(pid: int) -> EngineProcessRunner:
        return next(e for e in engines if e.process is not None and e.process.pid == pid)

    def completed() -> int:
        watch.poll()
        return sum(isinstance(r.event, AgentUpgradeCompleted) for r in watch.events)

    try:
        for engine in engines:
            engine.start()
        started = run_cli("upgrade", "start", "--package", Path(package).name, "--all-agents-in-cluster", CLUSTER,
                          "--max-concurrent", "12", "--no-delayed-start", database_url=postgres_url, env=env)
        assert started.returncode == 0, started.stdout + started.stderr
        rollout_id = re.search(r"Rollout ([0-9a-f-]{36}) started", started.stdout)
        assert rollout_id, started.stdout

        eventually(lambda: completed() >= 4 and len(holders("upgrade")) >= 2,
                   lambda: f"several engines driving upgrades\n{logs()}")
        listed = run_cli("engines", database_url=postgres_url, env=env).stdout
        assert all(f"/{engine.process.pid}/" in listed for engine in engines if engine.process), listed
        [runner_pid] = holders("rollout")
        killed = by_pid(runner_pid)
        killed.kill()  # SIGKILL the engine running the rollout, mid-rollout

        eventually(lambda: any(pid != runner_pid for pid in holders("rollout")) and completed() >= 10,
                   lambda: f"another engine to take the rollout over\n{logs()}")
        busy: list[int] = []
        eventually(lambda: bool(busy.extend(pid for pid in holders("upgrade") if pid != runner_pid) or busy),
                   lambda: f"a surviving engine driving upgrades ({completed()} of {AGENTS} agents done)\n{logs()}")
        paused = by_pid(busy[0])
        paused.pause()  # SIGSTOP an engine holding upgrades, for longer than its leases last
        taken_over = watch.position
        time.sleep(LEASE_SECONDS * 2.5)
        eventually(lambda: busy[0] not in holders("upgrade") and watch.poll() is not None
                   and watch.position > taken_over, lambda: f"the paused engine's upgrades taken over\n{logs()}")
        paused.resume()

        eventually(lambda: any(isinstance(r.event, RolloutCompleted) for r in watch.poll() + watch.events),
                   lambda: f"the rollout to complete ({completed()} of {AGENTS} agents)\n{logs()}")
    finally:
        for engine in engines:
            if engine.alive():
                engine.resume()
            engine.stop()
        leases.dispose()

    watch.poll()
    positions = [r.position for r in watch.events]
    assert positions == list(range(1, len(positions) + 1)), "the global order has no gap"
    scheduled = {r.event.agent: list(r.event.plan.steps) for r in watch.events
                 if isinstance(r.event, AgentUpgradeScheduled)}
    assert len(scheduled) == AGENTS
    assert sum(watch.resumes().values()) >= 1, "upgrades of the killed and the paused engine were taken over"
    journal = simulation.journal()
    for name, steps in scheduled.items():
        assert [step for agent, step in journal if agent == name] == steps, f"{name}: each step applied once, in order"
    progress = run_cli("progress", "--json", database_url=postgres_url, env=env)
    [rollout] = json.loads(progress.stdout)
    assert {agent["state"] for agent in rollout["agents"]} == {UpgradeState.COMPLETED.value}, rollout
    verified = run_cli("audit", "verify", database_url=postgres_url, env=env)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "engine error" not in logs()
    assert "taken over by another engine process" in paused.logs() or "lost the lease" in paused.logs(), paused.logs()
