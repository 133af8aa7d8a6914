"""The agent gateway contract: the same tests for every implementation of ``AgentGateway``.

Each implementation is reached through ``gateway_factory``, which builds a ``Rig``: the gateway under
test, and the simulated agents behind it (for injecting faults and reading what was applied). A later
HTTP gateway joins the parameters by serving a ``SimulatedAgentGateway`` over HTTP.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import httpx
import pytest

from dma_upgrade.adapters.agents.http_gateway import HttpAgentGateway
from dma_upgrade.adapters.agents.simulated_gateway import SimulatedAgent, SimulatedAgentGateway, Sleeper, no_sleep
from dma_upgrade.adapters.agents.simulator import LoopbackRoutes, serve_simulation
from dma_upgrade.engine.errors import AgentOutcomeUnknown, AgentStepFailed, AgentUnreachable
from dma_upgrade.engine.packages import INSTALL_PHASES
from dma_upgrade.engine.ports import AgentAddress, AgentGateway, PackageRef, StepOutcome, StepStatus
from dma_upgrade.engine.upgrade_events import Step
from tests.phase_reports import reached

OLD = "10.4.0.0-14112"
NEW = "10.5.0.0-15000"
PACKAGE = PackageRef(sha256="ab" * 32, version=NEW)
MAIN = AgentAddress(name="dma-main", address="10.0.0.1")
BACKUP = AgentAddress(name="dma-backup", address="10.0.0.2")
OTHER = AgentAddress(name="dma-other", address="10.0.0.3")


@dataclass
class Rig:
    """The gateway under test and the simulated agents it talks to."""

    gateway: AgentGateway
    agents: SimulatedAgentGateway


GatewayFactory = Callable[..., Rig]


def cluster() -> list[SimulatedAgent]:
    return [
        SimulatedAgent(name=MAIN.name, address=MAIN.address, cluster="dms-1", version=OLD,
                       partner=BACKUP.name),
        SimulatedAgent(name=BACKUP.name, address=BACKUP.address, cluster="dms-1", version=OLD, active=False),
        SimulatedAgent(name=OTHER.name, address=OTHER.address, cluster="dms-2", version=OLD),
    ]


def _simulated(agents: Sequence[SimulatedAgent], sleeper: Sleeper = no_sleep,
               step_seconds: Mapping[Step, float] | None = None) -> Rig:
    simulated = SimulatedAgentGateway(agents, sleeper=sleeper, step_seconds=step_seconds)
    return Rig(gateway=simulated, agents=simulated)


def _http(stack: contextlib.ExitStack, agents: Sequence[SimulatedAgent], sleeper: Sleeper = no_sleep,
          step_seconds: Mapping[Step, float] | None = None) -> Rig:
    """Each agent of one in-process simulation served by a real uvicorn on its own loopback port.

    The client routes each agent's own address to its port; no retries, since the contract counts
    injected faults per port call (retries are tested in ``test_http_agent_gateway.py``).
    """
    simulated = SimulatedAgentGateway(agents, sleeper=sleeper, step_seconds=step_seconds)
    routes = stack.enter_context(serve_simulation(simulated, [agent.name for agent in agents]))
    client = stack.enter_context(httpx.Client(transport=LoopbackRoutes(routes)))
    return Rig(gateway=HttpAgentGateway(timeout_seconds=15, retries=0, client=client), agents=simulated)


@pytest.fixture(params=["simulated", "http"])
def gateway_factory(request: pytest.FixtureRequest) -> Iterator[GatewayFactory]:
    """Builds a rig from agent specs (and an optional sleeper and step durations) per implementation."""
    with contextlib.ExitStack() as stack:
        factories: dict[str, GatewayFactory] = {"simulated": _simulated, "http": functools.partial(_http, stack)}
        yield factories[request.param]


@pytest.fixture
def rig(gateway_factory: GatewayFactory) -> Rig:
    return gateway_factory(cluster())


def phases_of(rig: Rig, agent: AgentAddress, key: str) -> list[tuple[str, int, int]]:
    reported: list[tuple[str, int, int]] = []
    rig.gateway.perform(agent, Step.INSTALL, key, PACKAGE,
                        on_phase=lambda phase, index, count: reported.append((phase, index, count)))
    return reached(reported)


def test_performing_a_key_twice_applies_it_once_and_returns_the_same_outcome(rig: Rig) -> None:
    first = rig.gateway.perform(MAIN, Step.INSTALL, "u1:install:1", PACKAGE)
    second_phases = phases_of(rig, MAIN, "u1:install:1")
    second = rig.gateway.perform(MAIN, Step.INSTALL, "u1:install:1", PACKAGE)
    assert first == second == StepOutcome(version_after=NEW)
    assert second_phases == []
    assert [(e.step, e.key) for e in rig.agents.journal_of(MAIN.name)] == [(Step.INSTALL, "u1:install:1")]


def test_every_step_kind_is_deduplicated_on_its_key(rig: Rig) -> None:
    for step in Step:
        rig.gateway.perform(MAIN, step, f"u1:{step}:1", PACKAGE)
        rig.gateway.perform(MAIN, step, f"u1:{step}:1", PACKAGE)
    assert [e.step for e in rig.agents.journal_of(MAIN.name)] == list(Step)


def test_steps_other_than_install_report_no_version(rig: Rig) -> None:
    outcomes = {step: rig.gateway.perform(OTHER, step, f"u1:{step}:1", PACKAGE) for step in Step}
    assert {step: o.version_after for step, o in outcomes.items()} == {
        step: (NEW if step is Step.INSTALL else None) for step in Step}


def test_the_version_changes_only_once_the_install_succeeded(rig: Rig) -> None:
    seen_during: list[str] = []

    def on_phase(phase: str, index: int, count: int) -> None:
        seen_during.append(rig.gateway.identify(MAIN.address).version)

    outcome = rig.gateway.perform(MAIN, Step.INSTALL, "u1:install:1", PACKAGE, on_phase=on_phase)
    assert set(seen_during) == {OLD}
    assert outcome.version_after == NEW
    assert rig.gateway.identify(MAIN.address).version == NEW
    assert rig.gateway.identify(MAIN.address).facts.version == NEW


def test_steps_other_than_install_leave_the_version_alone(rig: Rig) -> None:
    for step in Step:
        if step is not Step.INSTALL:
            rig.gateway.perform(MAIN, step, f"u1:{step}:1", PACKAGE)
    assert rig.gateway.identify(MAIN.address).version == OLD


def test_a_failed_install_leaves_the_version_unchanged(rig: Rig) -> None:
    rig.agents.fail(MAIN.name, Step.INSTALL, reason="disk full")
    with pytest.raises(AgentStepFailed, match="disk full"):
        rig.gateway.perform(MAIN, Step.INSTALL, "u1:install:1", PACKAGE)
    assert rig.gateway.identify(MAIN.address).version == OLD


def test_an_install_broken_mid_way_reports_phases_up_to_the_break_and_keeps_the_version(rig: Rig) -> None:
    rig.agents.break_during_install(MAIN.name, phase="Upgrade database")
    reported: list[str] = []
    with pytest.raises(AgentStepFailed) as caught:
        rig.gateway.perform(MAIN, Step.INSTALL, "u1:install:1", PACKAGE,
                            on_phase=lambda phase, index, count: reported.append(phase))
    assert not isinstance(caught.value, AgentUnreachable)
    assert reached(reported) == list(INSTALL_PHASES[:INSTALL_PHASES.index("Upgrade database") + 1])
    assert rig.gateway.identify(MAIN.address).version == OLD
    assert rig.gateway.step_status(MAIN, "u1:install:1") is StepStatus.FAILED
    assert rig.agents.journal_of(MAIN.name) == []


def test_an_install_reports_every_phase_in_the_documented_order(rig: Rig) -> None:
    reported = phases_of(rig, MAIN, "u1:install:1")
    count = len(INSTALL_PHASES)
    assert reported == [(phase, index, count) for index, phase in enumerate(INSTALL_PHASES)]
    assert [phase for phase, _, _ in reported][:3] == ["Lock", "Disable", "Kill"]


def test_step_status_goes_from_unknown_through_running_to_succeeded(rig: Rig) -> None:
    key = "u1:install:1"
    assert rig.gateway.step_status(MAIN, key) is StepStatus.UNKNOWN
    during: list[StepStatus] = []

    def on_phase(phase: str, index: int, count: int) -> None:
        during.append(rig.gateway.step_status(MAIN, key))

    rig.gateway.perform(MAIN, Step.INSTALL, key, PACKAGE, on_phase=on_phase)
    assert set(during) == {StepStatus.RUNNING}
    assert rig.gateway.step_status(MAIN, key) is StepStatus.SUCCEEDED


def test_keys_are_known_per_agent(rig: Rig) -> None:
    rig.gateway.perform(MAIN, Step.UPLOAD, "u1:upload:1", PACKAGE)
    assert rig.gateway.step_status(MAIN, "u1:upload:1") is StepStatus.SUCCEEDED
    assert rig.gateway.step_status(OTHER, "u1:upload:1") is StepStatus.UNKNOWN


def test_a_failed_attempt_is_failed_and_not_applied_and_a_new_key_then_succeeds(rig: Rig) -> None:
    rig.agents.fail(MAIN.name, Step.STOP_SNMP, reason="service did not stop")
    with pytest.raises(AgentStepFailed) as caught:
        rig.gateway.perform(MAIN, Step.STOP_SNMP, "u1:stop_snmp:1", PACKAGE)
    assert caught.value.agent == MAIN.name
    assert caught.value.step == Step.STOP_SNMP.value
    assert "service did not stop" in str(caught.value)
    assert not isinstance(caught.value, AgentOutcomeUnknown)  # the agent said so: a new key is safe
    assert rig.gateway.step_status(MAIN, "u1:stop_snmp:1") is StepStatus.FAILED
    assert rig.agents.journal_of(MAIN.name) == []
    assert rig.agents.agent(MAIN.name).snmp_running

    assert rig.gateway.perform(MAIN, Step.STOP_SNMP, "u1:stop_snmp:2", PACKAGE) == StepOutcome()
    assert rig.gateway.step_status(MAIN, "u1:stop_snmp:1") is StepStatus.FAILED
    assert rig.gateway.step_status(MAIN, "u1:stop_snmp:2") is StepStatus.SUCCEEDED
    assert [e.key for e in rig.agents.journal_of(MAIN.name)] == ["u1:stop_snmp:2"]
    assert not rig.agents.agent(MAIN.name).snmp_running


def test_an_unreachable_agent_raises_agent_unreachable_and_learns_nothing(rig: Rig) -> None:
    rig.agents.unreachable(MAIN.name)
    with pytest.raises(AgentUnreachable):
        rig.gateway.perform(MAIN, Step.UPLOAD, "u1:upload:1", PACKAGE)
    with pytest.raises(AgentUnreachable):
        rig.gateway.step_status(MAIN, "u1:upload:1")
    with pytest.raises(AgentUnreachable):
        rig.gateway.identify(MAIN.address)
    rig.gateway.perform(OTHER, Step.UPLOAD, "u1:upload:1", PACKAGE)

    rig.agents.heal(MAIN.name)
    assert rig.gateway.step_status(MAIN, "u1:upload:1") is StepStatus.UNKNOWN
    assert rig.agents.journal_of(MAIN.name) == []


def test_agent_unreachable_is_a_kind_of_step_failure(rig: Rig) -> None:
    rig.agents.unreachable(MAIN.name, times=1)
    with pytest.raises(AgentStepFailed):
        rig.gateway.perform(MAIN, Step.UPLOAD, "u1:upload:1", PACKAGE)


def test_an_address_where_no_agent_answers_is_unreachable(rig: Rig) -> None:
    nobody = AgentAddress(name="dma-ghost", address="10.9.9.9")
    with pytest.raises(AgentUnreachable):
        rig.gateway.perform(nobody, Step.UPLOAD, "u1:upload:1", PACKAGE)
    with pytest.raises(AgentUnreachable):
        rig.gateway.step_status(nobody, "u1:upload:1")
    with pytest.raises(AgentUnreachable):
        rig.gateway.identify("10.9.9.9")


def test_identify_tells_who_answers_at_an_address(rig: Rig) -> None:
    identity = rig.gateway.identify(BACKUP.address)
    assert (identity.name, identity.address, identity.cluster, identity.version) == (
        BACKUP.name, BACKUP.address, "dms-1", OLD)
    assert identity.facts.version == OLD
    assert identity.facts.os == "Windows Server 2022"
    assert {"dotnet-8", "aspnetcore-8"} <= identity.facts.components


def test_a_wrong_reported_version_is_the_version_after_the_install(rig: Rig) -> None:
    rig.agents.report_version(MAIN.name, "10.4.0.0-14113")
    outcome = rig.gateway.perform(MAIN, Step.INSTALL, "u1:install:1", PACKAGE)
    assert outcome.version_after == "10.4.0.0-14113"
    assert rig.gateway.identify(MAIN.address).version == "10.4.0.0-14113"


def test_the_same_key_from_two_threads_is_applied_once(gateway_factory: GatewayFactory) -> None:
    release = threading.Event()
    rig = gateway_factory(cluster(), sleeper=lambda seconds: release.wait(10),
                          step_seconds={Step.INSTALL: 12.0})
    outcomes: list[StepOutcome] = []
    errors: list[BaseException] = []

    def perform() -> None:
        try:
            outcomes.append(rig.gateway.perform(MAIN, Step.INSTALL, "u1:install:1", PACKAGE))
        except BaseException as error:  # pragma: no cover - reported by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=perform) for _ in range(2)]
    for thread in threads:
        thread.start()
    threads[0].join(0.2)
    assert rig.gateway.step_status(MAIN, "u1:install:1") is StepStatus.RUNNING
    release.set()
    for thread in threads:
        thread.join(10)
    assert errors == []
    assert outcomes == [StepOutcome(version_after=NEW)] * 2
    assert len(rig.agents.journal_of(MAIN.name)) == 1


def test_different_agents_perform_in_parallel(gateway_factory: GatewayFactory) -> None:
    both_installing = threading.Barrier(2, timeout=10)
    rig = gateway_factory(cluster(), sleeper=lambda seconds: both_installing.wait(),
                          step_seconds={Step.INSTALL: 12.0})
    errors: list[BaseException] = []

    def install(agent: AgentAddress) -> None:
        try:
            rig.gateway.perform(agent, Step.INSTALL, "u1:install:1", PACKAGE)
        except BaseException as error:  # pragma: no cover - reported by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=install, args=(agent,)) for agent in (MAIN, OTHER)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert errors == []
    assert {rig.gateway.identify(a.address).version for a in (MAIN, OTHER)} == {NEW}


def test_the_global_journal_keeps_the_order_of_operations_across_a_failover_pair(rig: Rig) -> None:
    rig.gateway.perform(BACKUP, Step.INSTALL, "b:install:1", PACKAGE)
    rig.gateway.perform(BACKUP, Step.SWITCH_OVER, "b:switch_over:1", PACKAGE)
    rig.gateway.perform(MAIN, Step.INSTALL, "m:install:1", PACKAGE)
    assert rig.agents.journal() == [(BACKUP.name, Step.INSTALL), (BACKUP.name, Step.SWITCH_OVER),
                                    (MAIN.name, Step.INSTALL)]
    assert rig.agents.agent(BACKUP.name).active
    assert not rig.agents.agent(MAIN.name).active
