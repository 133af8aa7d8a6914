"""``dma-upgrade agent-sim`` as a real process: steps over HTTP, SIGKILL, restart, nothing forgotten."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from adapters.agent_sim import AgentMemory, create_agent_app, load_memory, serve_in_thread
from adapters.http_gateway import HttpAgentGateway
from adapters.simulated_gateway import SimulatedAgent
from engine.errors import AgentStepFailed, AgentUnreachable, InvalidInput
from engine.packages import INSTALL_PHASES
from engine.ports import AgentAddress, PackageRef, StepOutcome, StepStatus
from engine.upgrade_events import Step
from tests.e2e.cli import run_cli
from tests.e2e.engine_cluster import OLD, AgentSimProcess, free_port

NEW = "10.5.0.0-15000"
PACKAGE = PackageRef(sha256="cd" * 32, version=NEW)

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="uses SIGKILL")


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "agent-sim" / "dma-01"


@pytest.fixture
def simulator(state_dir: Path, tmp_path: Path) -> Iterator[AgentSimProcess]:
    sim = AgentSimProcess("dma-01", state_dir, log_dir=tmp_path, step_seconds=0.12)
    try:
        yield sim
    finally:
        sim.stop()


@pytest.mark.slow
def test_the_simulator_remembers_its_steps_across_a_sigkill(simulator: AgentSimProcess, state_dir: Path) -> None:
    simulator.start()
    agent = AgentAddress(name="dma-01", address=simulator.address)
    phases: list[str] = []
    with HttpAgentGateway(timeout_seconds=5, backoff_seconds=0.05) as gateway:
        identity = gateway.identify(simulator.address)
        assert (identity.name, identity.cluster, identity.version) == ("dma-01", "north", OLD)
        assert gateway.perform(agent, Step.UPLOAD, "u1:upload:1", PACKAGE) == StepOutcome()
        outcome = gateway.perform(agent, Step.INSTALL, "u1:install:1", PACKAGE,
                                  on_phase=lambda phase, index, count: phases.append(phase))
        assert outcome == StepOutcome(version_after=NEW)
        assert phases == list(INSTALL_PHASES)

        simulator.kill()
        with HttpAgentGateway(timeout_seconds=1, retries=0) as once, pytest.raises(AgentUnreachable):
            once.identify(simulator.address)
        simulator.start()

        journal = httpx.get(f"http://{simulator.address}/journal", timeout=5).json()
        assert journal == [{"step": "upload", "key": "u1:upload:1", "package_version": NEW},
                           {"step": "install", "key": "u1:install:1", "package_version": NEW}]
        assert gateway.identify(simulator.address).version == NEW
        assert gateway.identify(simulator.address).facts.version == NEW
        assert gateway.step_status(agent, "u1:install:1") is StepStatus.SUCCEEDED
        assert gateway.step_status(agent, "u1:start:1") is StepStatus.UNKNOWN
        status = httpx.get(f"http://{simulator.address}/steps/u1:install:1", timeout=5).json()
        assert status == {"status": "succeeded", "version_after": NEW}

        again: list[str] = []
        assert gateway.perform(agent, Step.INSTALL, "u1:install:1", PACKAGE,
                               on_phase=lambda phase, index, count: again.append(phase)) == outcome
        assert again == []
        with pytest.raises(AgentStepFailed, match="was used for install"):
            gateway.perform(agent, Step.START, "u1:install:1", PACKAGE)
        gateway.perform(agent, Step.START, "u1:start:1", PACKAGE)

    journal = httpx.get(f"http://{simulator.address}/journal", timeout=5).json()
    assert [entry["key"] for entry in journal] == ["u1:upload:1", "u1:install:1", "u1:start:1"]
    saved = json.loads((state_dir / "state.json").read_text())
    assert saved["version"] == NEW
    assert saved["keys"]["u1:install:1"]["status"] == "succeeded"


@pytest.mark.slow
def test_injected_failures_fail_the_first_attempts_and_are_remembered(simulator: AgentSimProcess) -> None:
    simulator.start("--fail", "install:1")
    agent = AgentAddress(name="dma-01", address=simulator.address)
    with HttpAgentGateway(timeout_seconds=5, backoff_seconds=0.05) as gateway:
        with pytest.raises(AgentStepFailed, match="injected failure of install") as caught:
            gateway.perform(agent, Step.INSTALL, "u1:install:1", PACKAGE)
        assert not isinstance(caught.value, AgentUnreachable)
        assert gateway.identify(simulator.address).version == OLD
        simulator.kill()
        simulator.start()
        assert gateway.step_status(agent, "u1:install:1") is StepStatus.FAILED
        assert gateway.perform(agent, Step.INSTALL, "u1:install:2", PACKAGE).version_after == NEW
    assert [e["key"] for e in httpx.get(f"http://{simulator.address}/journal", timeout=5).json()] == [
        "u1:install:2"]


def test_bad_options_are_one_line_errors(tmp_path: Path) -> None:
    result = run_cli("agent-sim", "--port", str(free_port()), "--name", "dma-01", "--fail", "dance:2",
                     "--state-dir", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.startswith("error: --fail 'dance:2'")
    assert "Traceback" not in result.stderr


def test_a_key_running_when_the_simulator_died_is_unknown_after_restart(tmp_path: Path) -> None:
    state_file = tmp_path / "state.json"
    memory = AgentMemory(name="dma-01", version=OLD, active=True).to_json()
    memory["keys"] = {
        "u1:install:1": {"step": "install", "package_sha256": PACKAGE.sha256, "status": "running",
                         "version_after": None, "error": None},
        "u1:upload:1": {"step": "upload", "package_sha256": PACKAGE.sha256, "status": "succeeded",
                        "version_after": None, "error": None},
    }
    state_file.write_text(json.dumps(memory))
    loaded = load_memory(state_file)
    assert loaded is not None and list(loaded.keys) == ["u1:upload:1"]

    app = create_agent_app(SimulatedAgent(name="dma-01", address="127.0.0.1:1"), state_file, 0.0, {})
    with serve_in_thread(app) as address, HttpAgentGateway(retries=0) as gateway:
        agent = AgentAddress(name="dma-01", address=address)
        assert gateway.step_status(agent, "u1:install:1") is StepStatus.UNKNOWN
        assert gateway.step_status(agent, "u1:upload:1") is StepStatus.SUCCEEDED
        assert gateway.perform(agent, Step.INSTALL, "u1:install:1", PACKAGE).version_after == NEW
    saved = load_memory(state_file)
    assert saved is not None and saved.version == NEW
    assert [entry.key for entry in saved.journal] == ["u1:install:1"]
    assert {key: record.status for key, record in saved.keys.items()} == {
        "u1:upload:1": StepStatus.SUCCEEDED, "u1:install:1": StepStatus.SUCCEEDED}


def test_a_state_file_of_another_agent_or_unreadable_is_refused(tmp_path: Path) -> None:
    state_file = tmp_path / "state.json"
    state_file.write_text(json.dumps(AgentMemory(name="dma-02", version=OLD, active=True).to_json()))
    with pytest.raises(InvalidInput, match="belongs to agent 'dma-02'"):
        create_agent_app(SimulatedAgent(name="dma-01", address="127.0.0.1:1"), state_file, 0.0, {})
    state_file.write_text("{not json")
    with pytest.raises(InvalidInput, match="is not JSON"):
        create_agent_app(SimulatedAgent(name="dma-01", address="127.0.0.1:1"), state_file, 0.0, {})
