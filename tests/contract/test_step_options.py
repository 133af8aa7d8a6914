"""The upgrade's options travel with every step: the HTTP gateway sends them, the served simulated agent applies
and journals them, a body without them means the documented defaults, and an unknown option is refused."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from dma_upgrade.adapters.agents.http_gateway import HttpAgentGateway
from dma_upgrade.adapters.agents.simulated_gateway import SimulatedAgent, SimulatedAgentGateway
from dma_upgrade.engine.ports import AgentAddress, PackageRef
from dma_upgrade.engine.upgrade_events import Step, UpgradeOptions
from tests.contract.served_agent import served_agent

OLD = "10.4.0.0-14112"
NEW = "10.5.0.0-15000"
SHA = "ab" * 32


@pytest.fixture
def agent() -> Iterator[tuple[SimulatedAgentGateway, AgentAddress]]:
    with served_agent(OLD) as served:
        yield served


@pytest.mark.parametrize("options", [
    UpgradeOptions(),
    UpgradeOptions(extract_all=False),
    UpgradeOptions(extract_all=False, delayed_start=False, auto_start=False, stop_snmp=False, reboot=True),
], ids=["defaults", "no-extract-all", "every-option-changed"])
def test_every_option_reaches_the_agent_over_http(agent: tuple[SimulatedAgentGateway, AgentAddress],
                                                  options: UpgradeOptions) -> None:
    simulation, address = agent
    package = PackageRef(sha256=SHA, version=NEW, options=options)
    with HttpAgentGateway(timeout_seconds=5) as gateway:
        gateway.perform(address, Step.UPLOAD, "u1:upload:1", package)
        gateway.perform(address, Step.INSTALL, "u1:install:1", package)
    assert [(entry.step, entry.options) for entry in simulation.journal_of("dma-01")] == [
        (Step.UPLOAD, options), (Step.INSTALL, options)]
    journal = httpx.get(f"http://{address.address}/journal", timeout=5).json()
    assert [entry["options"] for entry in journal] == [options.model_dump()] * 2


def test_the_in_process_simulation_accepts_and_journals_the_options() -> None:
    simulation = SimulatedAgentGateway([SimulatedAgent(name="dma-01", address="10.0.0.1", version=OLD)])
    options = UpgradeOptions(extract_all=False)
    simulation.perform(AgentAddress("dma-01", "10.0.0.1"), Step.UPLOAD, "k1",
                       PackageRef(sha256=SHA, version=NEW, options=options))
    [entry] = simulation.journal_of("dma-01")
    assert entry.options == options


def test_a_step_without_options_gets_the_documented_defaults(agent: tuple[SimulatedAgentGateway, AgentAddress]
                                                             ) -> None:
    simulation, address = agent
    body = {"step": "upload", "package_sha256": SHA, "package_version": NEW, "agent": "dma-01"}
    assert httpx.post(f"http://{address.address}/steps/k1", json=body, timeout=5).status_code == 200
    [entry] = simulation.journal_of("dma-01")
    assert entry.options == UpgradeOptions()


def test_an_unknown_option_is_a_malformed_body_and_nothing_is_applied(
        agent: tuple[SimulatedAgentGateway, AgentAddress]) -> None:
    simulation, address = agent
    body = {"step": "upload", "package_sha256": SHA, "package_version": NEW, "agent": "dma-01",
            "options": {"extract_all": False, "turbo": True}}
    assert httpx.post(f"http://{address.address}/steps/k1", json=body, timeout=5).status_code == 422
    assert simulation.journal_of("dma-01") == []


@pytest.mark.parametrize("web_only", [True, False], ids=["web", "full"])
def test_a_web_package_is_said_so_over_http_and_leaves_dataminer_running_on_its_version(
        agent: tuple[SimulatedAgentGateway, AgentAddress], web_only: bool) -> None:
    simulation, address = agent
    package = PackageRef(sha256=SHA, version=NEW, web_only=web_only)
    with HttpAgentGateway(timeout_seconds=5) as gateway:
        gateway.perform(address, Step.UPLOAD, "u1:upload:1", package)
        outcome = gateway.perform(address, Step.INSTALL, "u1:install:1", package)
    state = simulation.agent("dma-01")
    expected = (OLD, True) if web_only else (NEW, False)
    assert (outcome.version_after, state.dma_running) == expected
    assert state.version == expected[0]
