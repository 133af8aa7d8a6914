"""Setting an agent's SNMP ports (an event) clears the Stop SNMP port-conflict warning; the upgrade's options reach
the agents with every step; a rollout that breaks the documented upgrade path is refused unless told to skip it;
facts apply to an agent's version whatever its notation."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from dma_upgrade.adapters.agents.simulated_gateway import modern_facts
from dma_upgrade.engine.agent_events import AgentPortsChanged, agent_stream_id
from dma_upgrade.engine.errors import Conflict, InvalidInput, NotFound
from dma_upgrade.engine.service import OptionOverrides
from dma_upgrade.engine.upgrade_paths import UpgradePathRefused
from tests.integration.rollout_harness import ACTOR, AgentSpec, RolloutHarness

CONFLICT = "Stop SNMP is off and SLSNMPAgent and Windows SNMP both use UDP port"


def refused(h: RolloutHarness, error: type[Exception], match: str, attempt: Callable[[], object]) -> None:
    """``attempt`` raises ``error`` matching ``match`` and appends nothing."""
    head = h.head()
    with pytest.raises(error, match=match):
        attempt()
    assert h.head() == head


def test_the_port_conflict_warning_goes_away_once_the_ports_differ(harness: RolloutHarness) -> None:
    no_stop = OptionOverrides(stop_snmp=False)
    before = harness.service.plan(harness.spec(names=("dma-1",), overrides=no_stop))
    assert any(f"agent dma-1: {CONFLICT} 161" in warning for warning in before.warnings)

    record = harness.service.set_agent_ports("dma-1", snmp_agent_port=1161, actor=ACTOR)

    assert record.facts is not None
    assert (record.facts.snmp_agent_port, record.facts.windows_snmp_port) == (1161, 161)
    [last] = harness.store.read_stream(agent_stream_id("dma-1"))[-1:]
    assert last.event == AgentPortsChanged(snmp_agent_port=1161, windows_snmp_port=161)
    assert last.actor == ACTOR
    after = harness.service.plan(harness.spec(names=("dma-1",), overrides=no_stop))
    assert not any(CONFLICT in warning for warning in after.warnings)


def test_setting_the_ports_back_to_one_port_brings_the_warning_back(harness: RolloutHarness) -> None:
    harness.service.set_agent_ports("dma-1", snmp_agent_port=1161, windows_snmp_port=162, actor=ACTOR)
    harness.service.set_agent_ports("dma-1", windows_snmp_port=1161, actor=ACTOR)
    planned = harness.service.plan(harness.spec(names=("dma-1",), overrides=OptionOverrides(stop_snmp=False)))
    assert any(f"agent dma-1: {CONFLICT} 1161" in warning for warning in planned.warnings)


def test_setting_the_ports_they_have_appends_nothing(harness: RolloutHarness) -> None:
    head = harness.head()
    record = harness.service.set_agent_ports("dma-1", snmp_agent_port=161, windows_snmp_port=161, actor=ACTOR)
    assert record.facts is not None and record.facts.snmp_agent_port == 161
    assert harness.head() == head


@pytest.mark.parametrize(("ports", "error", "match"), [
    ({}, InvalidInput, "give --snmp-port, --windows-snmp-port or both"),
    ({"snmp_agent_port": 0}, InvalidInput, "invalid UDP port 0"),
    ({"windows_snmp_port": 65536}, InvalidInput, "invalid UDP port 65536"),
])
def test_bad_ports_are_refused(harness: RolloutHarness, ports: dict[str, int], error: type[Exception],
                               match: str) -> None:
    refused(harness, error, match, lambda: harness.service.set_agent_ports("dma-1", actor=ACTOR, **ports))


def test_ports_of_an_unknown_agent_are_not_found(harness: RolloutHarness) -> None:
    refused(harness, NotFound, "unknown agent 'dma-99'",
            lambda: harness.service.set_agent_ports("dma-99", snmp_agent_port=1161, actor=ACTOR))


def test_ports_of_an_agent_without_facts_are_a_conflict(harness: RolloutHarness) -> None:
    harness.service.register_agent(name="bare", address="10.0.9.9", version="10.4.0.0-14112", actor=ACTOR)
    refused(harness, Conflict, "agent bare has reported no facts",
            lambda: harness.service.set_agent_ports("bare", snmp_agent_port=1161, actor=ACTOR))


def test_every_option_of_the_rollout_reaches_the_agent_with_every_step(harness: RolloutHarness) -> None:
    overrides = OptionOverrides(extract_all=False, delayed_start=False, stop_snmp=False, reboot=True)
    planned, _ = harness.start_and_run(names=("dma-1",), overrides=overrides)
    journal = harness.gateway.journal_of("dma-1")
    assert [entry.step.value for entry in journal] == ["upload", "install", "reboot", "start"]
    assert {entry.options for entry in journal} == {planned.options}
    assert planned.options.extract_all is False and planned.options.reboot is True


def test_a_jump_that_breaks_the_upgrade_path_is_refused_with_the_chain(make_harness: Callable[..., RolloutHarness],
                                                                       ) -> None:
    h = make_harness(extra_agents=(AgentSpec("old-1", "10.0.2.1", cluster="south", version="10.2.0.0(CU5)-12000"),))
    refused(h, UpgradePathRefused, r"agent old-1: 10\.2\.0\.0\(CU5\)-12000 cannot go to 10\.4\.9\.0-14794 directly: "
                                   r"install 10\.3\.0 with its latest CU → 10\.4\.9\.0-14794",
            lambda: h.start(cluster="south"))


def test_skip_path_check_plans_it_anyway_recorded_with_the_problems_as_warnings(
        make_harness: Callable[..., RolloutHarness]) -> None:
    h = make_harness(extra_agents=(AgentSpec("old-1", "10.0.2.1", cluster="south", version="10.2.0.0(CU5)-12000"),))
    planned = h.start(cluster="south", skip_path_check=True)
    assert planned.skip_path_check
    assert any("agent old-1: upgrade 10.2.0.0(CU5)-12000 to 10.3.0 with its latest CU first" in warning
               and "(--skip-path-check)" in warning for warning in planned.warnings)


def test_an_allowed_jump_is_planned_without_path_warnings(harness: RolloutHarness) -> None:
    planned = harness.start()
    assert not planned.skip_path_check
    assert not any("first:" in warning for warning in planned.warnings)


def test_facts_in_another_notation_of_the_agents_version_apply(harness: RolloutHarness) -> None:
    facts = modern_facts("10.4.0.0(CU0)-14112")  # the agent runs 10.4.0.0-14112: the same version
    record = harness.service.report_facts("dma-1", facts, actor=ACTOR)
    assert record.facts == facts
    refused(harness, InvalidInput, "facts for 10.4.0.0-14113 do not apply",
            lambda: harness.service.report_facts("dma-1", modern_facts("10.4.0.0-14113"), actor=ACTOR))
