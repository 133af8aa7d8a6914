"""The simulated agent gateway: its fault injection counters, simulated flags and time."""

from __future__ import annotations

import threading

import pytest

from dma_upgrade.adapters.agents.simulated_gateway import JournalEntry, SimulatedAgent, SimulatedAgentGateway
from dma_upgrade.engine.errors import AgentStepFailed, AgentUnreachable, InvalidInput
from dma_upgrade.engine.packages import INSTALL_PHASES, AgentFacts
from dma_upgrade.engine.ports import AgentAddress, AgentGateway, PackageRef, StepOutcome, StepStatus
from dma_upgrade.engine.upgrade_events import Step

OLD = "10.4.0.0-14112"
NEW = "10.5.0.0-15000"
PACKAGE = PackageRef(sha256="cd" * 32, version=NEW)
A = AgentAddress(name="dma-a", address="10.0.0.1")
B = AgentAddress(name="dma-b", address="10.0.0.2")


def gateway(**kwargs: object) -> SimulatedAgentGateway:
    agents = [SimulatedAgent(name=A.name, address=A.address, cluster="dms", version=OLD, partner=B.name),
              SimulatedAgent(name=B.name, address=B.address, cluster="dms", version=OLD, active=False)]
    return SimulatedAgentGateway(agents, **kwargs)  # type: ignore[arg-type]


def test_the_simulated_gateway_is_an_agent_gateway() -> None:
    port: AgentGateway = gateway()
    assert port.identify(A.address).name == A.name


def test_fail_fails_exactly_the_next_n_attempts_of_that_step() -> None:
    gw = gateway()
    gw.fail(A.name, Step.UPLOAD, times=2, reason="share not reachable")
    for attempt in (1, 2):
        with pytest.raises(AgentStepFailed, match="share not reachable"):
            gw.perform(A, Step.UPLOAD, f"upload:{attempt}", PACKAGE)
    assert gw.perform(A, Step.UPLOAD, "upload:3", PACKAGE) == StepOutcome()
    assert [e.key for e in gw.journal_of(A.name)] == ["upload:3"]


def test_fail_touches_neither_other_steps_nor_other_agents() -> None:
    gw = gateway()
    gw.fail(A.name, Step.INSTALL)
    gw.perform(A, Step.UPLOAD, "upload:1", PACKAGE)
    gw.perform(B, Step.INSTALL, "install:1", PACKAGE)
    with pytest.raises(AgentStepFailed):
        gw.perform(A, Step.INSTALL, "install:1", PACKAGE)


def test_fail_with_no_count_fails_until_healed() -> None:
    gw = gateway()
    gw.fail(A.name, Step.START, times=None)
    for attempt in range(5):
        with pytest.raises(AgentStepFailed):
            gw.perform(A, Step.START, f"start:{attempt}", PACKAGE)
    gw.heal(A.name)
    gw.perform(A, Step.START, "start:9", PACKAGE)


def test_an_answer_from_memory_consumes_no_failure() -> None:
    gw = gateway()
    gw.perform(A, Step.UPLOAD, "upload:1", PACKAGE)
    gw.fail(A.name, Step.UPLOAD, times=1)
    assert gw.perform(A, Step.UPLOAD, "upload:1", PACKAGE) == StepOutcome()
    with pytest.raises(AgentStepFailed):
        gw.perform(A, Step.UPLOAD, "upload:2", PACKAGE)


def test_a_failed_key_may_be_performed_again_since_it_was_not_applied() -> None:
    gw = gateway()
    gw.fail(A.name, Step.UPLOAD)
    with pytest.raises(AgentStepFailed):
        gw.perform(A, Step.UPLOAD, "upload:1", PACKAGE)
    gw.perform(A, Step.UPLOAD, "upload:1", PACKAGE)
    assert gw.step_status(A, "upload:1") is StepStatus.SUCCEEDED
    assert len(gw.journal_of(A.name)) == 1


def test_unreachable_counts_calls_of_every_kind() -> None:
    gw = gateway()
    gw.unreachable(A.name, times=3)
    with pytest.raises(AgentUnreachable):
        gw.step_status(A, "upload:1")
    with pytest.raises(AgentUnreachable):
        gw.identify(A.address)
    with pytest.raises(AgentUnreachable) as caught:
        gw.perform(A, Step.UPLOAD, "upload:1", PACKAGE)
    assert (caught.value.agent, caught.value.step) == (A.name, "upload")
    assert gw.step_status(A, "upload:1") is StepStatus.UNKNOWN
    gw.perform(A, Step.UPLOAD, "upload:1", PACKAGE)


def test_unreachable_without_a_count_lasts_until_healed() -> None:
    gw = gateway()
    gw.unreachable(A.name)
    for _ in range(5):
        with pytest.raises(AgentUnreachable):
            gw.identify(A.address)
    gw.identify(B.address)
    gw.heal(A.name)
    assert gw.identify(A.address).name == A.name


def test_an_unreachable_agent_does_not_answer_from_memory_either() -> None:
    gw = gateway()
    gw.perform(A, Step.UPLOAD, "upload:1", PACKAGE)
    gw.unreachable(A.name, times=1)
    with pytest.raises(AgentUnreachable):
        gw.perform(A, Step.UPLOAD, "upload:1", PACKAGE)
    assert gw.perform(A, Step.UPLOAD, "upload:1", PACKAGE) == StepOutcome()


def test_break_during_install_breaks_the_next_n_installs_at_the_phase() -> None:
    gw = gateway()
    gw.break_during_install(A.name, phase="Register", times=2)
    reported: list[str] = []
    for attempt in (1, 2):
        reported.clear()
        with pytest.raises(AgentStepFailed, match="Register"):
            gw.perform(A, Step.INSTALL, f"install:{attempt}", PACKAGE,
                       on_phase=lambda phase, index, count: reported.append(phase))
        assert reported[-1] == "Register"
        assert gw.agent(A.name).version == OLD
        assert not gw.agent(A.name).dma_running
    assert gw.perform(A, Step.INSTALL, "install:3", PACKAGE).version_after == NEW


def test_break_during_install_refuses_an_unknown_phase() -> None:
    with pytest.raises(InvalidInput, match="Reticulate"):
        gateway().break_during_install(A.name, phase="Reticulate")


def test_report_version_applies_to_the_next_n_installs_only() -> None:
    gw = gateway()
    gw.report_version(A.name, "10.4.0.0-14113", times=1)
    assert gw.perform(A, Step.INSTALL, "install:1", PACKAGE).version_after == "10.4.0.0-14113"
    assert gw.agent(A.name).version == "10.4.0.0-14113"
    assert gw.perform(A, Step.INSTALL, "install:2", PACKAGE).version_after == NEW


def test_negative_counts_are_refused() -> None:
    with pytest.raises(InvalidInput):
        gateway().fail(A.name, Step.UPLOAD, times=-1)


def test_faults_name_a_known_agent() -> None:
    with pytest.raises(KeyError, match="dma-z"):
        gateway().unreachable("dma-z")


def test_each_step_changes_the_simulated_flags() -> None:
    gw = gateway()
    start = gw.agent(A.name)
    assert (start.dma_running, start.snmp_running, start.active) == (True, True, True)
    assert start.uploaded == frozenset()
    gw.perform(A, Step.UPLOAD, "upload", PACKAGE)
    assert gw.agent(A.name).uploaded == {PACKAGE.sha256}
    gw.perform(A, Step.STOP_SNMP, "stop_snmp", PACKAGE)
    assert not gw.agent(A.name).snmp_running
    gw.perform(A, Step.INSTALL, "install", PACKAGE)
    assert not gw.agent(A.name).dma_running
    gw.perform(A, Step.REBOOT, "reboot", PACKAGE)
    assert gw.agent(A.name).reboots == 1
    gw.perform(A, Step.START, "start", PACKAGE)
    assert gw.agent(A.name).dma_running
    assert gw.agent(A.name).journal == tuple(
        JournalEntry(agent=A.name, step=step, key=step.value, package_version=NEW)
        for step in (Step.UPLOAD, Step.STOP_SNMP, Step.INSTALL, Step.REBOOT, Step.START))


def test_a_switch_over_toggles_which_agent_of_the_pair_is_active() -> None:
    gw = gateway()
    gw.perform(B, Step.SWITCH_OVER, "switch:1", PACKAGE)
    assert (gw.agent(A.name).active, gw.agent(B.name).active) == (False, True)
    gw.perform(A, Step.SWITCH_OVER, "switch:2", PACKAGE)
    assert (gw.agent(A.name).active, gw.agent(B.name).active) == (True, False)


def test_a_lone_agent_switching_over_flips_its_own_flag() -> None:
    gw = SimulatedAgentGateway([SimulatedAgent(name="solo", address="10.0.0.9")])
    solo = gw.address_of("solo")
    gw.perform(solo, Step.SWITCH_OVER, "switch:1", PACKAGE)
    assert not gw.agent("solo").active


def test_steps_take_their_time_through_the_sleeper_and_answers_from_memory_take_none() -> None:
    slept: list[float] = []
    gw = gateway(sleeper=slept.append, step_seconds={Step.INSTALL: 120.0, Step.UPLOAD: 5.0})
    gw.perform(A, Step.UPLOAD, "upload:1", PACKAGE)
    gw.perform(A, Step.STOP_SNMP, "stop_snmp:1", PACKAGE)
    gw.perform(A, Step.INSTALL, "install:1", PACKAGE)
    assert slept == [5.0] + [10.0] * len(INSTALL_PHASES)
    gw.perform(A, Step.INSTALL, "install:1", PACKAGE)
    assert len(slept) == 1 + len(INSTALL_PHASES)


def test_a_waiting_caller_shares_the_failure_of_the_attempt_it_joined() -> None:
    release = threading.Event()
    gw = gateway(sleeper=lambda seconds: release.wait(10), step_seconds={Step.INSTALL: 12.0})
    gw.break_during_install(A.name, phase="Start")
    results: list[object] = []

    def perform() -> None:
        try:
            results.append(gw.perform(A, Step.INSTALL, "install:1", PACKAGE))
        except AgentStepFailed as error:
            results.append(error.reason)

    first = threading.Thread(target=perform)
    first.start()
    while gw.step_status(A, "install:1") is not StepStatus.RUNNING:
        first.join(0.01)
    second = threading.Thread(target=perform)
    second.start()
    second.join(0.1)
    assert second.is_alive()
    release.set()
    first.join(10)
    second.join(10)
    assert results == ["the installer broke during Start"] * 2
    assert gw.journal_of(A.name) == []


def test_an_error_of_the_phase_reporter_fails_the_attempt_and_propagates() -> None:
    gw = gateway()

    def broken(phase: str, index: int, count: int) -> None:
        raise RuntimeError("event store down")

    with pytest.raises(RuntimeError, match="event store down"):
        gw.perform(A, Step.INSTALL, "install:1", PACKAGE, on_phase=broken)
    assert gw.step_status(A, "install:1") is StepStatus.FAILED
    assert gw.agent(A.name).version == OLD


def test_a_key_reused_for_another_step_is_refused() -> None:
    gw = gateway()
    gw.perform(A, Step.UPLOAD, "key", PACKAGE)
    with pytest.raises(AgentStepFailed, match="was used for upload"):
        gw.perform(A, Step.INSTALL, "key", PACKAGE)
    assert gw.agent(A.name).version == OLD


def test_an_address_answered_by_another_agent_is_refused() -> None:
    with pytest.raises(AgentStepFailed, match="is dma-b, not dma-a"):
        gateway().perform(AgentAddress(name=A.name, address=B.address), Step.UPLOAD, "upload:1", PACKAGE)


def test_identify_reports_given_facts_with_the_current_version() -> None:
    facts = AgentFacts(version="9.6.0.0-1", os="Windows Server 2016", database="cassandra",
                       nats_running=False, ports_reachable=True)
    gw = SimulatedAgentGateway([SimulatedAgent(name="old", address="10.0.0.7", version=OLD, facts=facts)])
    identity = gw.identify("10.0.0.7")
    assert identity.facts == facts.model_copy(update={"version": OLD})
    assert identity.cluster is None


@pytest.mark.parametrize("agents", [
    [SimulatedAgent(name="x", address="1"), SimulatedAgent(name="x", address="2")],
    [SimulatedAgent(name="x", address="1"), SimulatedAgent(name="y", address="1")],
    [SimulatedAgent(name="x", address="1", partner="nobody")],
    [SimulatedAgent(name="x", address="1", version="ten")],
    [SimulatedAgent(name="x", address="1", partner="y"), SimulatedAgent(name="y", address="2"),
     SimulatedAgent(name="z", address="3", partner="y")],
])
def test_inconsistent_agent_specs_are_refused(agents: list[SimulatedAgent]) -> None:
    with pytest.raises(InvalidInput):
        SimulatedAgentGateway(agents)


def test_an_agent_registered_after_the_gateway_was_made_is_discovered_on_its_first_call() -> None:
    later = AgentAddress(name="dma-c", address="10.0.0.3")
    asked: list[str] = []

    def discover(address: str) -> SimulatedAgent | None:
        asked.append(address)
        return SimulatedAgent(name=later.name, address=later.address, cluster="dms", version=OLD) \
            if address == later.address else None

    gw = gateway(discover=discover)
    assert gw.perform(later, Step.UPLOAD, "c:upload:1", PACKAGE) == StepOutcome()
    assert gw.step_status(later, "c:upload:1") is StepStatus.SUCCEEDED
    assert asked == [later.address]  # simulated from then on, not discovered again
    with pytest.raises(AgentUnreachable):
        gw.perform(AgentAddress(name="dma-x", address="10.0.0.9"), Step.UPLOAD, "x:upload:1", PACKAGE)
