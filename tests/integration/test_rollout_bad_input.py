"""Refused rollouts, uploads and commands: a clear error, and the store exactly as it was."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from dma_upgrade.adapters.agents.simulated_gateway import SimulatedAgent, modern_facts
from dma_upgrade.adapters.packages.archive import inspect_package
from dma_upgrade.engine.agent_events import FailoverRole
from dma_upgrade.engine.commands import rollout_command
from dma_upgrade.engine.errors import AgentUnreachable, Conflict, InvalidInput, InvalidTransition, NotFound
from dma_upgrade.engine.packages import CheckName, Comparison, PackageRejected, PrerequisiteCheck
from dma_upgrade.engine.rollout import RolloutState
from dma_upgrade.engine.service import AgentSelection, RolloutSpec
from tests.integration.rollout_harness import ACTOR, BACKUP, MAIN, START_VERSION, AgentSpec, RolloutHarness

NEWER = "10.4.10.0-14900"
NATS = PrerequisiteCheck(name=CheckName.NATS, comparison=Comparison.IS_TRUE)
LONE = (AgentSpec("lone-1", "10.0.1.1", cluster=None), AgentSpec("lone-2", "10.0.1.2", cluster=None))


@pytest.fixture
def harness(make_harness: Callable[..., RolloutHarness]) -> RolloutHarness:
    return make_harness(extra_agents=LONE)


def refused(h: RolloutHarness, error: type[Exception], match: str, attempt: Callable[[], object]) -> None:
    """``attempt`` raises ``error`` matching ``match`` and appends nothing."""
    head = h.head()
    with pytest.raises(error, match=match):
        attempt()
    assert h.head() == head


def test_an_unknown_agent_name_is_not_found(harness: RolloutHarness) -> None:
    refused(harness, NotFound, "unknown agent 'dma-99'", lambda: harness.start(names=("dma-1", "dma-99")))


def test_an_unknown_cluster_is_not_found(harness: RolloutHarness) -> None:
    refused(harness, NotFound, "unknown cluster 'south'", lambda: harness.start(cluster="south"))


def test_an_agent_in_an_active_individual_rollout_cannot_join_another(harness: RolloutHarness) -> None:
    first = harness.start(names=("lone-1",))
    newer = harness.upload(NEWER)

    refused(harness, Conflict, f"agent lone-1 is already in active rollout {first.rollout_id}",
            lambda: harness.start(package=newer, names=("lone-2", "lone-1")))


def test_a_clustered_agent_in_an_active_individual_rollout_blocks_its_cluster(harness: RolloutHarness) -> None:
    first = harness.start(names=("dma-1",))
    newer = harness.upload(NEWER)

    refused(harness, Conflict, f"cluster north already has an active rollout \\({first.rollout_id}\\)",
            lambda: harness.start(package=newer, names=("dma-2", "dma-1")))


def test_a_cluster_with_an_active_rollout_refuses_a_second_one(harness: RolloutHarness) -> None:
    first = harness.start()
    newer = harness.upload(NEWER)

    refused(harness, Conflict, f"cluster north already has an active rollout \\({first.rollout_id}\\)",
            lambda: harness.start(package=newer))


def test_a_package_that_executed_an_upgrade_cannot_execute_another(harness: RolloutHarness) -> None:
    assert harness.package is not None
    planned, rollout = harness.start_and_run(names=("dma-1",))
    assert rollout.state is RolloutState.COMPLETED

    refused(harness, Conflict, "was used by rollout .* and is completed: it cannot execute another upgrade",
            lambda: harness.start(names=("dma-2",)))
    record = harness.service.package(harness.package.sha256)
    assert (record.status, record.used_by) == ("completed", planned.rollout_id)
    assert [p.sha256 for p in harness.service.packages()] == [harness.package.sha256]


def test_an_unknown_package_is_not_found(harness: RolloutHarness) -> None:
    refused(harness, NotFound, "unknown package 'deadbeefdeadbeef'",
            lambda: harness.service.start_rollout(
                RolloutSpec(package="deadbeefdeadbeef", selection=AgentSelection(cluster="north")), actor=ACTOR))


def test_an_unknown_failover_policy_is_invalid_input(harness: RolloutHarness) -> None:
    refused(harness, InvalidInput, "unknown failover policy 'sideways'",
            lambda: harness.start(failover_policy="sideways"))


@pytest.mark.parametrize("command", ["resume", "pause", "cancel", "retry-failed"])
def test_a_command_the_completed_rollout_does_not_allow_is_an_invalid_transition(
        harness: RolloutHarness, command: str) -> None:
    planned, _ = harness.start_and_run(names=("lone-1",))

    refused(harness, InvalidTransition, "from state Completed",
            lambda: harness.service.control(rollout_command(command, planned.rollout_id), actor=ACTOR))


def test_an_unknown_rollout_command_is_invalid_input(harness: RolloutHarness) -> None:
    planned = harness.start(names=("lone-1",))

    refused(harness, InvalidInput, "unknown rollout command 'restart'",
            lambda: harness.service.control(rollout_command("restart", planned.rollout_id), actor=ACTOR))


def test_uploading_the_same_package_twice_is_a_conflict(harness: RolloutHarness) -> None:
    path = harness.build()
    inspected = inspect_package(path)

    refused(harness, Conflict, f"package {path.name} was uploaded already as {inspected.sha256[:12]} \\(available\\)",
            lambda: harness.service.record_upload(sha256=inspected.sha256, file_name=path.name,
                                                  size=inspected.size, manifest=inspected.manifest,
                                                  actor=ACTOR))
    assert len(harness.service.packages()) == 1


def test_a_prerequisite_a_modern_agent_fails_rejects_the_package_naming_agent_check_and_value(
        make_harness: Callable[..., RolloutHarness]) -> None:
    h = make_harness(upload=False, facts={"dma-2": modern_facts().model_copy(update={"nats_running": False})})

    refused(h, PackageRejected, "agent dma-2: check nats requires true, found false",
            lambda: h.upload(prerequisites=(NATS,)))
    assert h.service.packages() == []


def test_an_agent_older_than_the_refusal_accepts_a_failing_package_with_a_warning(
        make_harness: Callable[..., RolloutHarness]) -> None:
    old = "10.0.0.0(CU10)"
    h = make_harness(upload=False, extra_agents=(AgentSpec(
        "old-1", "10.0.2.1", cluster="south", version=old,
        facts=modern_facts(old).model_copy(update={"nats_running": False})),))

    package = h.upload(prerequisites=(NATS,))
    planned = h.start(package=package, cluster="south", skip_path_check=True)  # 10.0.0 CU10 needs CU19 first

    assert planned.skip_path_check
    assert any("agent old-1: check nats requires true, found false" in w and "predates the refusal" in w
               for w in planned.warnings)
    assert any("agent old-1: check nats" in w for w in planned.agents[0].warnings)


@pytest.mark.parametrize(("option", "text"), [
    ("max_concurrent", "abc"), ("max_concurrent", "150%"), ("max_concurrent", "-1"), ("max_errors", "many"),
    ("max_errors", "101%"), ("max_concurrent", "9" * 5000), ("max_errors", "9" * 5000),
])
def test_a_malformed_limit_is_invalid_input(harness: RolloutHarness, option: str, text: str) -> None:
    refused(harness, InvalidInput, f"--{option.replace('_', '-')}",
            lambda: harness.start(**{option: text}))


@pytest.mark.parametrize("text", ["0", "0%", " 0 "])
def test_a_max_concurrent_that_would_start_no_agent_is_refused_not_raised_to_one(harness: RolloutHarness,
                                                                                 text: str) -> None:
    refused(harness, InvalidInput, f"--max-concurrent must be at least 1, got '{text}'",
            lambda: harness.start(max_concurrent=text))


@pytest.mark.parametrize("text", ["0", "0%"])
def test_a_max_errors_of_zero_is_accepted_no_failure_tolerated(harness: RolloutHarness, text: str) -> None:
    assert harness.start(max_errors=text).max_errors == 0


def test_an_unknown_ip_address_that_does_not_answer_adds_no_agent(harness: RolloutHarness) -> None:
    assert harness.package is not None
    spec = RolloutSpec(package=harness.package.sha256, selection=AgentSelection(addresses=("10.9.9.9",)))

    refused(harness, AgentUnreachable, "no agent answers at 10.9.9.9",
            lambda: harness.service.start_rollout(spec, actor=ACTOR))


def test_choosing_a_cluster_and_agents_together_is_invalid_input(harness: RolloutHarness) -> None:
    assert harness.package is not None
    spec = RolloutSpec(package=harness.package.sha256, selection=AgentSelection(cluster="north", names=("dma-1",)))

    refused(harness, InvalidInput, "either a whole cluster or individual agents",
            lambda: harness.service.start_rollout(spec, actor=ACTOR))


@pytest.mark.parametrize(("key", "value", "match"), [
    ("failover-default-policy", "default", "must name a policy"),
    ("failover-default-policy", "sideways", "unknown failover policy"),
    ("delayed-start-seconds", "-5", "0..3600"),
    ("reboot", "maybe", "on or off"),
    ("colour", "blue", "unknown setting"),
])
def test_a_bad_setting_is_invalid_input(harness: RolloutHarness, key: str, value: str, match: str) -> None:
    refused(harness, InvalidInput, match, lambda: harness.service.set_setting(key, value, actor=ACTOR))


def _newcomer_answers_at(harness: RolloutHarness, address: str) -> None:
    """An agent that answers at ``address`` but is not registered yet."""
    harness.gateway.add(SimulatedAgent(name="newbie", address=address, cluster=None, version=START_VERSION))


def test_planning_with_an_unknown_ip_asks_the_agent_but_registers_nothing(harness: RolloutHarness) -> None:
    assert harness.package is not None
    _newcomer_answers_at(harness, "10.0.5.5")
    head = harness.head()
    spec = RolloutSpec(package=harness.package.sha256, selection=AgentSelection(addresses=("10.0.5.5",)))

    assert [a.name for a in harness.service.plan(spec).agents] == ["newbie"]
    assert harness.head() == head
    assert "newbie" not in {a.name for a in harness.service.agents()}


def test_a_refused_rollout_does_not_register_the_agents_it_found_by_ip(harness: RolloutHarness) -> None:
    assert harness.package is not None
    first = harness.start(names=("lone-1",))
    newer = harness.upload(NEWER)
    _newcomer_answers_at(harness, "10.0.5.5")
    spec = RolloutSpec(package=newer.sha256, selection=AgentSelection(names=("lone-1",), addresses=("10.0.5.5",)))

    refused(harness, Conflict, f"agent lone-1 is already in active rollout {first.rollout_id}",
            lambda: harness.service.start_rollout(spec, actor=ACTOR))
    assert "newbie" not in {a.name for a in harness.service.agents()}


def test_a_started_rollout_registers_the_agents_it_found_by_ip(harness: RolloutHarness) -> None:
    assert harness.package is not None
    _newcomer_answers_at(harness, "10.0.5.5")
    spec = RolloutSpec(package=harness.package.sha256, selection=AgentSelection(addresses=("10.0.5.5",)))

    planned = harness.service.start_rollout(spec, actor=ACTOR)
    assert [a.name for a in planned.agents] == ["newbie"]
    assert harness.service.agent("newbie").address == "10.0.5.5"


@pytest.mark.parametrize("field", ["address", "cluster", "os"])
def test_an_agent_with_control_characters_is_refused_before_anything_is_appended(harness: RolloutHarness,
                                                                                 field: str) -> None:
    values = {"address": "10.0.7.7", "cluster": "north", "os": "Windows Server 2022"}
    values[field] = values[field] + "\x00"
    facts = modern_facts(START_VERSION).model_copy(update={"os": values["os"]})
    refused(harness, InvalidInput, "printable", lambda: harness.service.register_agent(
        name="odd", address=values["address"], version=START_VERSION, cluster=values["cluster"], facts=facts,
        actor=ACTOR))


@pytest.mark.parametrize("address", ["", "   ", "10.0.0.9\n"])
def test_adding_an_agent_by_a_blank_or_unprintable_address_is_invalid_input(harness: RolloutHarness,
                                                                            address: str) -> None:
    refused(harness, InvalidInput, "invalid address", lambda: harness.service.add_agent_by_ip(address, actor=ACTOR))


# -- a pair is a pair -----------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "partner", "role", "cluster", "match"), [
    ("solo", "solo", FailoverRole.MAIN, "north", "agent solo cannot be its own failover partner"),
    ("spare", MAIN, FailoverRole.BACKUP, "north", f"{MAIN} is registered already and is paired with {BACKUP}; "
                                                  "to form a pair, register the first member naming the second"),
    ("spare", "dma-1", FailoverRole.BACKUP, "north", "dma-1 is registered already and names no failover partner"),
    ("spare", "lone-1", FailoverRole.BACKUP, "north", "lone-1 is in no cluster, spare would be in cluster north"),
])
def test_a_registration_that_would_break_a_failover_pair_is_invalid_input(
        harness: RolloutHarness, name: str, partner: str, role: FailoverRole, cluster: str, match: str) -> None:
    refused(harness, InvalidInput, match, lambda: harness.service.register_agent(
        name=name, address="10.0.7.7", version=START_VERSION, cluster=cluster, failover_partner=partner,
        failover_role=role, facts=modern_facts(START_VERSION), actor=ACTOR))


@pytest.mark.parametrize("policy", ["backup-first", "backup-first-switch-back"])
def test_one_member_of_a_pair_under_a_switch_over_policy_is_refused_unless_allowed(
        harness: RolloutHarness, policy: str) -> None:
    refused(harness, InvalidInput, f"agent {MAIN}: its failover partner {BACKUP} is not in this rollout.*"
                                   "--allow-partial-pair",
            lambda: harness.start(names=("dma-1", MAIN), failover_policy=policy))

    planned = harness.start(names=("dma-1", MAIN), failover_policy=policy, allow_partial_pair=True)

    stored = harness.service.rollout(planned.rollout_id).plan
    assert stored.allow_partial_pair and not any(a.plan.switch_over for a in stored.agents)


def test_an_agent_added_by_ip_never_forms_a_pair(harness: RolloutHarness) -> None:
    harness.service.register_agent(name="left", address="10.0.8.1", version=START_VERSION, cluster="north",
                                   failover_partner="newbie", failover_role=FailoverRole.MAIN,
                                   facts=modern_facts(START_VERSION), actor=ACTOR)
    _newcomer_answers_at(harness, "10.0.5.5")

    newbie = harness.service.add_agent_by_ip("10.0.5.5", actor=ACTOR)

    assert (newbie.failover_partner, newbie.failover_role) == (None, None)
    refused(harness, InvalidInput, "its failover partner newbie names no partner, not left",
            lambda: harness.start(names=("left", "newbie"), failover_policy="backup-first"))
