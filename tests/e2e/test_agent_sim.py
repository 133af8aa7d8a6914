"""``dma-upgrade agent-sim`` as a real process: steps over HTTP, SIGKILL, restart, nothing forgotten; an install
picked up by a second caller after the first one was killed; gateway retries that outlast the agent's restart."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from dma_upgrade.adapters.agents.http_gateway import HttpAgentGateway
from dma_upgrade.adapters.agents.simulated_gateway import SimulatedAgent
from dma_upgrade.adapters.agents.simulator import AgentMemory, create_agent_app, load_memory, serve_in_thread
from dma_upgrade.engine.errors import AgentStepFailed, AgentUnreachable, InvalidInput
from dma_upgrade.engine.packages import INSTALL_PHASES
from dma_upgrade.engine.ports import AgentAddress, PackageRef, StepOutcome, StepStatus
from dma_upgrade.engine.upgrade_events import Step, UpgradeOptions
from tests.e2e.cli import ROOT, run_cli, stop_process
from tests.e2e.engine_cluster import OLD, AgentSimProcess, free_port
from tests.phase_reports import reached as distinct_phases

NEW = "10.5.0.0-15000"
PACKAGE = PackageRef(sha256="cd" * 32, version=NEW)
DEFAULT_OPTIONS = UpgradeOptions().model_dump()
CHANGED_FILES_ONLY = PackageRef(sha256="cd" * 32, version=NEW, options=UpgradeOptions(extract_all=False))

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
        outcome = gateway.perform(agent, Step.INSTALL, "u1:install:1", CHANGED_FILES_ONLY,
                                  on_phase=lambda phase, index, count: phases.append(phase))
        assert outcome == StepOutcome(version_after=NEW)
        assert distinct_phases(phases) == list(INSTALL_PHASES)

        simulator.kill()
        with HttpAgentGateway(timeout_seconds=1, retries=0) as once, pytest.raises(AgentUnreachable):
            once.identify(simulator.address)
        simulator.start()

        journal = httpx.get(f"http://{simulator.address}/journal", timeout=5).json()
        assert journal == [  # the options each step came with, remembered across the restart
            {"step": "upload", "key": "u1:upload:1", "package_version": NEW, "options": DEFAULT_OPTIONS},
            {"step": "install", "key": "u1:install:1", "package_version": NEW,
             "options": {**DEFAULT_OPTIONS, "extract_all": False}}]
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


CALLER = textwrap.dedent("""
    import sys
    from dma_upgrade.adapters.agents.http_gateway import HttpAgentGateway
    from dma_upgrade.engine.ports import AgentAddress, PackageRef
    from dma_upgrade.engine.upgrade_events import Step

    address, key, sha256, version = sys.argv[1:5]

    def on_phase(phase, index, count):
        print(index, flush=True)

    with HttpAgentGateway(timeout_seconds=5) as gateway:
        gateway.perform(AgentAddress("dma-01", address), Step.INSTALL, key, PackageRef(sha256, version), on_phase)
    print("done", flush=True)
""")
"""An engine stand-in: performs an install with phase acknowledgements, printing each phase index."""

SAFETY = 120.0
"""How long a test waits for something before it gives up (a safety net, never a measured time)."""


@pytest.mark.slow
def test_an_install_whose_caller_was_killed_is_picked_up_by_the_next_caller(
        state_dir: Path, tmp_path: Path) -> None:
    """The first caller is SIGKILLed while the agent stands at a phase waiting for its acknowledgement; a second
    gateway sending the same key gets the phase the install is at and every later one, then the outcome."""
    simulator = AgentSimProcess("dma-01", state_dir, log_dir=tmp_path, step_seconds=6.0)  # half a second a phase
    caller: subprocess.Popen[str] | None = None
    try:
        simulator.start()
        agent = AgentAddress(name="dma-01", address=simulator.address)
        caller = subprocess.Popen([sys.executable, "-c", CALLER, simulator.address, "u1:install:1", PACKAGE.sha256,
                                   NEW], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert caller.stdout is not None
        reached: list[int] = []
        for line in caller.stdout:
            if line.strip().isdigit():
                reached.append(int(line))
            if reached and reached[-1] >= 2:
                break
        else:
            raise AssertionError(f"the first caller ended before phase 2: {reached}")
        caller.kill()  # mid-install: its on_phase returned, its acknowledgement may or may not have been sent
        caller.wait(10)

        phases: list[int] = []
        with HttpAgentGateway(timeout_seconds=5) as gateway:
            assert gateway.step_status(agent, "u1:install:1") is StepStatus.RUNNING
            outcome = gateway.perform(agent, Step.INSTALL, "u1:install:1", PACKAGE,
                                      on_phase=lambda phase, index, count: phases.append(index))
            assert outcome == StepOutcome(version_after=NEW)
            assert gateway.step_status(agent, "u1:install:1") is StepStatus.SUCCEEDED
        assert phases, "the second caller was told none of the remaining phases"
        assert distinct_phases(phases) == list(range(phases[0], len(INSTALL_PHASES))), phases  # the rest, in order
        assert phases[0] >= reached[-1]
        assert simulator.journal() == [{"step": "install", "key": "u1:install:1", "package_version": NEW,
                                      "options": DEFAULT_OPTIONS}]
    finally:
        if caller is not None:
            stop_process(caller)
        simulator.stop()


@pytest.mark.slow
def test_gateway_retries_outlast_an_agent_restart(simulator: AgentSimProcess) -> None:
    """The agent is SIGKILLed mid-install (while it waits at phase 3 for the acknowledgement) and started again
    about 2 s later, its state kept: the same perform call, retrying, gets the install done and never raises
    AgentUnreachable. The install ran again from its start (a key running when the agent died is unknown)."""
    simulator.step_seconds = 2.4  # a fifth of a second a phase
    simulator.start()
    agent = AgentAddress(name="dma-01", address=simulator.address)
    phases: list[int] = []
    killed = threading.Event()
    result: dict[str, object] = {}

    def on_phase(phase: str, index: int, count: int) -> None:
        phases.append(index)
        if index == 3 and not killed.is_set():
            simulator.kill()
            killed.set()

    def perform() -> None:
        with HttpAgentGateway(timeout_seconds=5) as gateway:  # the default retry span: 30 s
            try:
                result["outcome"] = gateway.perform(agent, Step.INSTALL, "u1:install:1", PACKAGE, on_phase)
            except BaseException as error:
                result["error"] = error

    worker = threading.Thread(target=perform, daemon=True)
    worker.start()
    try:
        assert killed.wait(SAFETY), f"the install never reached phase 3: {phases} {result}"
        time.sleep(2.0)  # the agent stays down a while: a downtime to outlast, not a measured time
        simulator.start()
    finally:
        worker.join(SAFETY)
    assert not worker.is_alive(), "the perform call never ended"
    assert "error" not in result, result
    assert result["outcome"] == StepOutcome(version_after=NEW)
    assert distinct_phases(phases) == [0, 1, 2, 3, *range(len(INSTALL_PHASES))], phases
    assert simulator.starts == 2
    assert simulator.journal() == [{"step": "install", "key": "u1:install:1", "package_version": NEW,
                                      "options": DEFAULT_OPTIONS}]
