"""Picking up a step in progress (docs/agent-protocol.md): a second ``POST /steps/{key}`` for a running key
becomes the install's caller; an install stops waiting at once for a caller whose connection is gone.

Real HTTP to a served simulated agent on a loopback port; the agent's installs wait for acknowledgements
(each phase takes no time otherwise), so where an install stands is decided by the callers alone.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from dma_upgrade.adapters.agents.http_gateway import HttpAgentGateway
from dma_upgrade.adapters.agents.simulated_gateway import SimulatedAgent, SimulatedAgentGateway
from dma_upgrade.adapters.agents.simulator import CALLER_HEADER, agent_app, serve_in_thread
from dma_upgrade.engine.packages import INSTALL_PHASES
from dma_upgrade.engine.ports import AgentAddress, PackageRef, StepOutcome, StepStatus
from dma_upgrade.engine.upgrade_events import Step
from tests.phase_reports import reached

NEW = "10.5.0.0-15000"
PACKAGE = PackageRef(sha256="ab" * 32, version=NEW)
BODY = {"step": "install", "package_sha256": PACKAGE.sha256, "package_version": NEW, "agent": "dma-01",
        "phase_acks": True}
SAFETY = 60.0
"""How long a test waits for something that happens at once before it gives up (never a measured time)."""


def served(phase_ack_timeout: float) -> tuple[SimulatedAgentGateway, Any]:
    simulation = SimulatedAgentGateway([SimulatedAgent(name="dma-01", address="127.0.0.1:1")])
    return simulation, agent_app(simulation, "dma-01", phase_ack_timeout=phase_ack_timeout, heartbeat_seconds=0.05)


@pytest.fixture
def agent() -> Iterator[tuple[SimulatedAgentGateway, AgentAddress]]:
    """An agent that would wait an hour for an acknowledgement: any progress is the callers' doing."""
    simulation, app = served(phase_ack_timeout=3600)
    with serve_in_thread(app) as address:
        yield simulation, AgentAddress(name="dma-01", address=address)


def wait_for(check: Any, what: str) -> None:
    deadline = time.monotonic() + SAFETY
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def test_a_second_caller_picks_up_a_running_install_and_only_its_acknowledgements_count(
        agent: tuple[SimulatedAgentGateway, AgentAddress]) -> None:
    simulation, address = agent
    first_phases: list[int] = []
    second_phases: list[int] = []
    at_kill = threading.Event()
    release = threading.Event()
    results: dict[str, Any] = {}

    def first_on_phase(phase: str, index: int, count: int) -> None:
        first_phases.append(index)
        if phase == "Kill":
            at_kill.set()
            assert release.wait(SAFETY)  # the first engine hangs here: the agent stands at Kill

    def first() -> None:
        with HttpAgentGateway(retries=0) as gateway:
            try:
                results["first"] = gateway.perform(address, Step.INSTALL, "u1:install:1", PACKAGE, first_on_phase)
            except BaseException as error:  # pragma: no cover - reported below
                results["first"] = error

    worker = threading.Thread(target=first, daemon=True)
    worker.start()
    try:
        assert at_kill.wait(SAFETY)
        kill = INSTALL_PHASES.index("Kill")
        with HttpAgentGateway(retries=0) as gateway:
            assert gateway.step_status(address, "u1:install:1") is StepStatus.RUNNING
            # An acknowledgement naming a caller that is not the install's is refused; the agent stays at Kill.
            stranger = httpx.post(f"http://{address.address}/steps/u1:install:1/phases/{kill}",
                                  json={"proceed": False, "caller": "someone-else"}, timeout=5)
            assert stranger.status_code == 409
            outcome = gateway.perform(address, Step.INSTALL, "u1:install:1", PACKAGE,
                                      lambda phase, index, count: second_phases.append(index))
        assert outcome == StepOutcome(version_after=NEW)
        assert reached(second_phases) == list(range(kill, len(INSTALL_PHASES)))  # where it stood, then every later
    finally:
        release.set()
        worker.join(SAFETY)
    assert results["first"] == StepOutcome(version_after=NEW)  # the first caller still learns the outcome ...
    assert reached(first_phases) == list(range(kill + 1))  # ... but no phase after it was picked up
    assert [(e.step, e.key) for e in simulation.journal_of("dma-01")] == [(Step.INSTALL, "u1:install:1")]


def test_an_install_stops_waiting_at_once_for_a_caller_whose_connection_is_gone(
        agent: tuple[SimulatedAgentGateway, AgentAddress]) -> None:
    simulation, address = agent
    with httpx.Client(base_url=f"http://{address.address}", timeout=5) as client, \
            client.stream("POST", "/steps/u1:install:1", json=BODY) as response:
        assert response.headers[CALLER_HEADER]
        lines = response.iter_lines()
        first = next(line for line in lines if line.strip())
        assert '"Lock"' in first
    # The caller is gone without acknowledging Lock; the agent would wait an hour for it, but goes on at once.
    with HttpAgentGateway(retries=0) as gateway:
        wait_for(lambda: gateway.step_status(address, "u1:install:1") is StepStatus.SUCCEEDED,
                 "the install still waits for the acknowledgement of a caller that is gone")
    assert simulation.agent("dma-01").version == NEW


def test_a_caller_picking_up_without_acknowledgements_lets_the_install_go_on(
        agent: tuple[SimulatedAgentGateway, AgentAddress]) -> None:
    simulation, address = agent
    with httpx.Client(base_url=f"http://{address.address}", timeout=5) as client, \
            client.stream("POST", "/steps/u1:install:1", json=BODY) as response:
        lines = response.iter_lines()  # kept: a dropped line iterator closes the connection
        assert '"Lock"' in next(line for line in lines if line.strip())
        # Still connected, not acknowledging: a plain perform (no on_phase) picks the install up.
        with HttpAgentGateway(retries=0) as gateway:
            assert gateway.perform(address, Step.INSTALL, "u1:install:1", PACKAGE).version_after == NEW
        rest = [line for line in lines if line.strip()]
    assert rest == ['{"status": "succeeded", "version_after": "10.5.0.0-15000"}']  # the outcome, no more phases
    assert [e.key for e in simulation.journal_of("dma-01")] == ["u1:install:1"]


def test_a_running_key_picked_up_for_another_step_is_refused(
        agent: tuple[SimulatedAgentGateway, AgentAddress]) -> None:
    _, address = agent
    with httpx.Client(base_url=f"http://{address.address}", timeout=5) as client, \
            client.stream("POST", "/steps/u1:install:1", json=BODY) as response:
        lines = response.iter_lines()  # kept: a dropped line iterator closes the connection
        assert '"Lock"' in next(line for line in lines if line.strip())
        other = client.post("/steps/u1:install:1", json={**BODY, "step": "upload"})
        assert other.status_code == 409
        assert "is running install" in other.json()["error"]
        impostor = client.post("/steps/u1:install:1", json={**BODY, "agent": "dma-99"})
        assert impostor.status_code == 409
        ack = client.post("/steps/u1:install:1/phases/0",
                          json={"proceed": False, "caller": response.headers[CALLER_HEADER]})
        assert ack.json() == {"status": "acknowledged"}
        assert any('"failed"' in line for line in lines)
