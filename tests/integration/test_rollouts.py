"""Rollouts end to end on SQLite and PostgreSQL: real store, simulated agents, a fake clock."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from datetime import timedelta

import pytest

from dma_upgrade.engine.commands import CancelRollout, PauseRollout, ResumeRollout, RetryFailedAgents
from dma_upgrade.engine.errors import Conflict, InvalidTransition
from dma_upgrade.engine.rollout import RolloutState
from dma_upgrade.engine.rollout_events import (
    FailoverPolicy,
    RolloutPaused,
    RolloutPlanned,
    RolloutResumed,
    RolloutStarted,
)
from dma_upgrade.engine.service import OptionOverrides
from dma_upgrade.engine.upgrade_events import (
    AgentUpgradeCompleted,
    AgentUpgradeFailed,
    AgentUpgradeScheduled,
    Step,
    StepStarted,
    StepSucceeded,
)
from dma_upgrade.engine.upgrade_machine import UpgradeState
from tests.integration.rollout_harness import (
    ACTOR,
    BACKUP,
    CLUSTER,
    MAIN,
    PACKAGE_VERSION,
    PAIR,
    START_VERSION,
    RolloutHarness,
)

S = Step
FULL = [S.UPLOAD, S.STOP_SNMP, S.INSTALL, S.START]
BACKUP_THEN_SWITCH = [S.UPLOAD, S.STOP_SNMP, S.INSTALL, S.START, S.SWITCH_OVER]
"""A pair member switches over only once it runs the new version (docs/invariants.md)."""


def _intervals(h: RolloutHarness) -> dict[str, tuple[int, int]]:
    """Per agent: global position of its first StepStarted and of the event that ended its upgrade."""
    agent_of = h.agent_by_upgrade_stream()
    first: dict[str, int] = {}
    last: dict[str, int] = {}
    for recorded in h.store.read_all():
        agent = agent_of.get(recorded.stream_id)
        if agent is None:
            continue
        if isinstance(recorded.event, StepStarted):
            first.setdefault(agent, recorded.position)
        if isinstance(recorded.event, AgentUpgradeCompleted | AgentUpgradeFailed):
            last[agent] = recorded.position
    return {agent: (first[agent], last[agent]) for agent in first}


def _started(h: RolloutHarness) -> list[str]:
    """The agents whose upgrade has taken a first step, sorted."""
    agent_of = h.agent_by_upgrade_stream()
    return sorted({agent_of[e.stream_id] for e in h.store.read_category("upgrade-")
                   if isinstance(e.event, StepStarted)})


# -- failover policies ----------------------------------------------------------------------------


def test_backup_first_upgrades_the_backup_switches_over_then_upgrades_the_main(harness: RolloutHarness) -> None:
    _, rollout = harness.start_and_run(failover_policy="backup-first")

    assert rollout.state is RolloutState.COMPLETED
    assert harness.journal_of(*PAIR) == [(BACKUP, s) for s in BACKUP_THEN_SWITCH] + [(MAIN, s) for s in FULL]
    assert harness.gateway.agent(BACKUP).active and not harness.gateway.agent(MAIN).active


def test_backup_first_switch_back_also_switches_the_main_back_after_its_install(harness: RolloutHarness) -> None:
    _, rollout = harness.start_and_run(names=PAIR, failover_policy="backup-first-switch-back")

    assert rollout.state is RolloutState.COMPLETED
    assert harness.journal_of(*PAIR) == ([(BACKUP, s) for s in BACKUP_THEN_SWITCH]
                                         + [(MAIN, s) for s in BACKUP_THEN_SWITCH])
    assert harness.gateway.agent(MAIN).active and not harness.gateway.agent(BACKUP).active


def test_backup_first_never_touches_the_main_when_the_backup_fails(harness: RolloutHarness) -> None:
    harness.gateway.fail(BACKUP, S.INSTALL, times=None)

    planned, rollout = harness.start_and_run(names=PAIR, failover_policy="backup-first")

    assert rollout.state is RolloutState.FAILED
    assert harness.upgrade(planned, BACKUP).state is UpgradeState.FAILED
    assert harness.upgrade(planned, MAIN).state is UpgradeState.SCHEDULED
    assert harness.steps_of(MAIN) == [] and S.SWITCH_OVER not in harness.steps_of(BACKUP)
    assert harness.gateway.agent(MAIN).active and harness.gateway.agent(MAIN).dma_running


def test_simultaneous_upgrades_both_agents_of_the_pair_at_once_without_switching_over(
        make_harness: Callable[..., RolloutHarness]) -> None:
    both_uploading = threading.Barrier(2, timeout=10)  # breaks (failing the upload) if one waited for the other
    h = make_harness(step_seconds={S.UPLOAD: 0.001}, sleeper=lambda _: both_uploading.wait())

    planned, rollout = h.start_and_run(names=PAIR, failover_policy="simultaneous")

    assert rollout.state is RolloutState.COMPLETED
    assert all(a.after == () and not a.plan.switch_over for a in planned.agents)
    assert h.steps_of(MAIN) == FULL and h.steps_of(BACKUP) == FULL
    assert h.gateway.agent(MAIN).active and not h.gateway.agent(BACKUP).active
    main, backup = _intervals(h)[MAIN], _intervals(h)[BACKUP]
    assert main[0] < backup[1] and backup[0] < main[1]  # each started before the other ended


def test_default_policy_resolves_to_the_setting_and_the_plan_keeps_it_after_the_setting_changes(
        harness: RolloutHarness) -> None:
    harness.service.set_setting("failover-default-policy", "backup-first", actor=ACTOR)

    planned = harness.start(names=PAIR, failover_policy="default")
    harness.service.set_setting("failover-default-policy", "simultaneous", actor=ACTOR)
    rollout = harness.run(planned.rollout_id)

    stored = [e.event for e in harness.store.read_stream(f"rollout-{planned.rollout_id}")
              if isinstance(e.event, RolloutPlanned)]
    assert [p.failover_policy for p in stored] == [FailoverPolicy.BACKUP_FIRST]
    assert harness.service.rollout(planned.rollout_id).plan.failover_policy is FailoverPolicy.BACKUP_FIRST
    assert rollout.state is RolloutState.COMPLETED
    assert harness.journal_of(*PAIR) == [(BACKUP, s) for s in BACKUP_THEN_SWITCH] + [(MAIN, s) for s in FULL]


# -- options --------------------------------------------------------------------------------------


def test_stop_snmp_off_skips_the_stop_snmp_step_and_the_snmp_stopped_state(harness: RolloutHarness) -> None:
    planned, rollout = harness.start_and_run(overrides=OptionOverrides(stop_snmp=False))

    assert rollout.state is RolloutState.COMPLETED
    for agent in planned.agents:
        assert S.STOP_SNMP not in harness.steps_of(agent.name)
        assert UpgradeState.SNMP_STOPPED not in harness.states_visited(planned, agent.name)
        assert not any(isinstance(e.event, StepStarted) and e.event.step is S.STOP_SNMP
                       for e in harness.upgrade_events(planned, agent.name))
        assert harness.gateway.agent(agent.name).snmp_running
    assert any("Stop SNMP is off" in w and "UDP port 161" in w for w in planned.warnings)


def test_reboot_on_visits_rebooting_and_the_agent_reboots(harness: RolloutHarness) -> None:
    planned, rollout = harness.start_and_run(names=("dma-1",), overrides=OptionOverrides(reboot=True))

    assert rollout.state is RolloutState.COMPLETED
    assert harness.states_visited(planned, "dma-1") == [
        UpgradeState.SCHEDULED, UpgradeState.UPLOADED, UpgradeState.SNMP_STOPPED, UpgradeState.INSTALLING,
        UpgradeState.REBOOTING, UpgradeState.COMPLETED]
    assert harness.steps_of("dma-1") == [S.UPLOAD, S.STOP_SNMP, S.INSTALL, S.REBOOT, S.START]
    assert harness.gateway.agent("dma-1").reboots == 1


def test_auto_start_off_leaves_the_agent_stopped_until_started_manually_once(harness: RolloutHarness) -> None:
    planned, rollout = harness.start_and_run(names=("dma-1",), overrides=OptionOverrides(auto_start=False))

    assert rollout.state is RolloutState.COMPLETED
    completed = [e.event for e in harness.upgrade_events(planned, "dma-1")
                 if isinstance(e.event, AgentUpgradeCompleted)]
    assert [c.manual_start_needed for c in completed] == [True]
    assert S.START not in harness.steps_of("dma-1")
    assert not harness.gateway.agent("dma-1").dma_running
    upgrade_id = str(harness.upgrade_id(planned, "dma-1"))
    assert harness.service.agent("dma-1").stopped_by_upgrade == upgrade_id

    record = harness.service.start_agent_manually("dma-1", actor=ACTOR)

    assert record.stopped_by_upgrade is None
    assert harness.gateway.agent("dma-1").dma_running
    assert harness.steps_of("dma-1")[-1] is S.START
    head = harness.head()
    with pytest.raises(Conflict, match="dma-1 was not left stopped"):
        harness.service.start_agent_manually("dma-1", actor=ACTOR)
    assert harness.head() == head


def test_delayed_start_starts_the_dma_only_after_the_configured_delay_on_the_clock(
        harness: RolloutHarness) -> None:
    harness.service.set_setting("delayed-start-seconds", "90", actor=ACTOR)

    planned, rollout = harness.start_and_run(names=("dma-1", "dma-2"), max_concurrent="1")

    assert rollout.state is RolloutState.COMPLETED
    assert all(a.plan.delayed_start_seconds == 90 for a in planned.agents)
    for agent in planned.agents:
        events = harness.upgrade_events(planned, agent.name)
        installed = next(e for e in events if isinstance(e.event, StepSucceeded) and e.event.step is S.INSTALL)
        started = next(e for e in events if isinstance(e.event, StepStarted) and e.event.step is S.START)
        assert started.recorded_at - installed.recorded_at == timedelta(seconds=90)
    assert harness.waiter.waits.count(90) == len(planned.agents)


def test_delayed_start_off_starts_the_dma_right_after_the_install(harness: RolloutHarness) -> None:
    planned, _ = harness.start_and_run(names=("dma-1",), overrides=OptionOverrides(delayed_start=False))

    events = harness.upgrade_events(planned, "dma-1")
    installed = next(e for e in events if isinstance(e.event, StepSucceeded) and e.event.step is S.INSTALL)
    started = next(e for e in events if isinstance(e.event, StepStarted) and e.event.step is S.START)
    assert started.recorded_at == installed.recorded_at
    assert harness.waiter.waits == []


def test_upload_only_distributes_the_package_and_leaves_versions_and_the_package_untouched(
        harness: RolloutHarness) -> None:
    assert harness.package is not None
    planned, rollout = harness.start_and_run(upload_only=True)

    assert rollout.state is RolloutState.COMPLETED
    for agent in planned.agents:
        assert harness.states_visited(planned, agent.name) == [
            UpgradeState.SCHEDULED, UpgradeState.UPLOADED, UpgradeState.COMPLETED]
        assert harness.steps_of(agent.name) == [S.UPLOAD]
        assert harness.package.sha256 in harness.gateway.agent(agent.name).uploaded
        assert harness.service.agent(agent.name).version == START_VERSION
    assert harness.service.package(harness.package.sha256).status == "available"
    harness.start()  # the package can still execute the real upgrade


# -- controls -------------------------------------------------------------------------------------


def test_max_concurrent_one_never_has_two_agents_in_flight(harness: RolloutHarness) -> None:
    planned, rollout = harness.start_and_run(max_concurrent="1")

    assert rollout.state is RolloutState.COMPLETED
    spans = sorted(_intervals(harness).values())
    assert len(spans) == len(planned.agents)
    assert all(earlier[1] < later[0] for earlier, later in itertools.pairwise(spans))


def test_max_errors_zero_fails_the_rollout_on_the_first_failure_and_starts_no_other_agent(
        harness: RolloutHarness) -> None:
    harness.gateway.fail("dma-1", S.INSTALL, times=None)

    planned, rollout = harness.start_and_run(names=("dma-1", "dma-2", MAIN), max_concurrent="1", max_errors="0")

    assert rollout.state is RolloutState.FAILED
    assert rollout.end_reason is not None and "error budget exceeded" in rollout.end_reason
    assert harness.upgrade(planned, "dma-1").state is UpgradeState.FAILED
    others = [a.name for a in planned.agents if a.name != "dma-1"]
    assert all(harness.upgrade(planned, name).state is UpgradeState.SCHEDULED for name in others)
    assert all(harness.steps_of(name) == [] for name in others)


def test_a_step_failing_twice_then_succeeding_completes_on_its_third_attempt(harness: RolloutHarness) -> None:
    harness.gateway.fail("dma-1", S.INSTALL, times=2)

    planned, rollout = harness.start_and_run(names=("dma-1",))

    assert rollout.state is RolloutState.COMPLETED
    upgrade = harness.upgrade(planned, "dma-1")
    assert upgrade.state is UpgradeState.COMPLETED and upgrade.attempts[S.INSTALL] == 3
    keys = [e.event.idempotency_key for e in harness.upgrade_events(planned, "dma-1")
            if isinstance(e.event, StepStarted) and e.event.step is S.INSTALL]
    assert len(keys) == len(set(keys)) == 3
    assert harness.steps_of("dma-1").count(S.INSTALL) == 1  # failed attempts are not applied


def test_a_permanent_failure_fails_the_rollout_after_the_retry_budget(harness: RolloutHarness) -> None:
    harness.gateway.fail("dma-1", S.INSTALL, times=None, reason="disk full")

    planned, rollout = harness.start_and_run(names=("dma-1", "dma-2"))

    assert rollout.state is RolloutState.FAILED
    assert rollout.end_reason == "1 of 2 agents failed"
    upgrade = harness.upgrade(planned, "dma-1")
    assert upgrade.state is UpgradeState.FAILED and upgrade.attempts[S.INSTALL] == 3
    assert upgrade.last_error is not None and "disk full" in upgrade.last_error
    assert harness.upgrade(planned, "dma-2").state is UpgradeState.COMPLETED


def test_retry_failed_after_healing_the_agent_completes_the_rollout(harness: RolloutHarness) -> None:
    harness.gateway.fail("dma-1", S.INSTALL, times=None)
    planned, failed = harness.start_and_run(names=("dma-1", "dma-2"))
    assert failed.state is RolloutState.FAILED

    harness.gateway.heal("dma-1")
    harness.service.control(RetryFailedAgents(planned.rollout_id), actor=ACTOR)
    rollout = harness.run(planned.rollout_id)

    assert rollout.state is RolloutState.COMPLETED
    assert harness.upgrade(planned, "dma-1").state is UpgradeState.COMPLETED
    assert harness.service.agent("dma-1").version == PACKAGE_VERSION


def test_a_run_after_retry_failed_retries_the_failed_upgrade(harness: RolloutHarness) -> None:
    harness.gateway.fail("dma-1", S.INSTALL, times=None)
    planned, _ = harness.start_and_run(names=("dma-1",))
    harness.service.control(RetryFailedAgents(planned.rollout_id), actor=ACTOR)

    harness.run(planned.rollout_id)

    assert harness.upgrade(planned, "dma-1").retries == 1


def test_a_retried_upgrade_gets_a_fresh_retry_budget_and_a_new_attempt_key(harness: RolloutHarness) -> None:
    harness.gateway.fail("dma-1", S.INSTALL, times=None)
    planned, _ = harness.start_and_run(names=("dma-1",))
    harness.gateway.heal("dma-1")
    harness.service.control(RetryFailedAgents(planned.rollout_id), actor=ACTOR)
    failed = harness.upgrade(planned, "dma-1")  # retried here as the runner's _retry_failed would do
    harness.service.append(f"upgrade-{harness.upgrade_id(planned, 'dma-1')}", failed.version, failed.retry(),
                           actor=ACTOR)

    rollout = harness.run(planned.rollout_id)

    upgrade = harness.upgrade(planned, "dma-1")
    assert (rollout.state, upgrade.state, upgrade.attempts[S.INSTALL]) == (
        RolloutState.COMPLETED, UpgradeState.COMPLETED, 4)
    assert harness.steps_of("dma-1").count(S.INSTALL) == 1


def test_after_a_failed_run_pause_and_resume_are_refused_naming_the_state(harness: RolloutHarness) -> None:
    harness.gateway.fail("dma-1", S.INSTALL, times=None)
    planned, rollout = harness.start_and_run(names=("dma-1",))
    assert rollout.state is RolloutState.FAILED
    head = harness.head()

    with pytest.raises(InvalidTransition, match="cannot pause the rollout from state Failed"):
        harness.service.control(PauseRollout(planned.rollout_id), actor=ACTOR)
    with pytest.raises(InvalidTransition, match="cannot resume the rollout from state Failed"):
        harness.service.control(ResumeRollout(planned.rollout_id), actor=ACTOR)
    assert harness.head() == head


def test_pause_starts_no_new_agent_until_resumed(make_harness: Callable[..., RolloutHarness]) -> None:
    holder: dict[str, RolloutHarness] = {}
    paused_once = threading.Event()

    def pause_on_first_upload(_: float) -> None:
        if not paused_once.is_set():
            paused_once.set()
            h = holder["h"]
            h.service.control(PauseRollout(h.service.rollouts()[0].plan.rollout_id), actor=ACTOR)

    h = holder["h"] = make_harness(step_seconds={S.UPLOAD: 0.001}, sleeper=pause_on_first_upload)
    planned = h.start(names=("dma-1", "dma-2", MAIN), max_concurrent="1",
                      overrides=OptionOverrides(delayed_start=False))
    seen_while_paused: list[list[str]] = []

    def resume_when_paused(_: float) -> None:
        if h.service.rollout(planned.rollout_id).state is RolloutState.PAUSED:
            seen_while_paused.append(_started(h))
            h.service.control(ResumeRollout(planned.rollout_id), actor=ACTOR)

    h.waiter.on_wait = resume_when_paused
    rollout = h.run(planned.rollout_id)

    assert rollout.state is RolloutState.COMPLETED
    first = planned.agents[0].name
    assert seen_while_paused == [[first]]  # the agent in flight finished; no other had started
    positions = {type(e.event): e.position for e in h.store.read_stream(f"rollout-{planned.rollout_id}")}
    later = [start for agent, (start, _) in _intervals(h).items() if agent != first]
    assert len(later) == len(planned.agents) - 1
    assert all(start > positions[RolloutResumed] > positions[RolloutPaused] for start in later)


def test_cancelling_a_planned_rollout_cancels_every_upgrade_and_releases_the_cluster(
        harness: RolloutHarness) -> None:
    planned = harness.start()
    harness.service.control(CancelRollout(planned.rollout_id), actor=ACTOR)

    rollout = harness.run(planned.rollout_id)

    assert rollout.state is RolloutState.CANCELLED
    assert all(harness.upgrade(planned, a.name).state is UpgradeState.CANCELLED for a in planned.agents)
    assert harness.gateway.journal() == []
    newer = harness.upload("10.4.10.0-14900")
    assert harness.start(package=newer).agents  # the cluster is free again


def test_cancelling_during_an_upload_cancels_that_agent_once_uploaded_and_the_rest_unstarted(
        make_harness: Callable[..., RolloutHarness]) -> None:
    holder: dict[str, RolloutHarness] = {}

    def cancel_on_first_upload(_: float) -> None:
        h = holder["h"]
        rollout = h.service.rollouts()[0]
        if rollout.state is RolloutState.RUNNING:
            h.service.control(CancelRollout(rollout.plan.rollout_id), actor=ACTOR)

    h = holder["h"] = make_harness(step_seconds={S.UPLOAD: 0.001}, sleeper=cancel_on_first_upload)
    planned, rollout = h.start_and_run(max_concurrent="1")

    assert rollout.state is RolloutState.CANCELLED
    first = planned.agents[0].name
    assert h.states_visited(planned, first)[-2:] == [UpgradeState.UPLOADED, UpgradeState.CANCELLED]
    assert h.gateway.journal() == [(first, S.UPLOAD)]
    assert all(h.upgrade(planned, a.name).state is UpgradeState.CANCELLED for a in planned.agents)
    assert all(a.version == START_VERSION for a in h.service.agents())
    h.start(package=h.upload("10.4.10.0-14900"))  # the cluster was released


def test_cancelling_during_an_install_lets_that_agent_finish_and_cancels_the_rest(
        make_harness: Callable[..., RolloutHarness]) -> None:
    holder: dict[str, RolloutHarness] = {}

    def cancel_during_install(_: float) -> None:
        h = holder["h"]
        rollout = h.service.rollouts()[0]
        if rollout.state is RolloutState.RUNNING:
            h.service.control(CancelRollout(rollout.plan.rollout_id), actor=ACTOR)

    h = holder["h"] = make_harness(step_seconds={S.INSTALL: 0.001}, sleeper=cancel_during_install)
    planned, rollout = h.start_and_run(max_concurrent="1")

    assert rollout.state is RolloutState.CANCELLED
    first = planned.agents[0].name
    assert h.upgrade(planned, first).state is UpgradeState.COMPLETED
    assert h.steps_of(first) == FULL
    assert all(h.upgrade(planned, a.name).state is UpgradeState.CANCELLED for a in planned.agents[1:])


def test_cancelling_a_failed_rollout_and_running_it_cancels_the_failed_upgrade_and_frees_the_cluster(
        harness: RolloutHarness) -> None:
    harness.gateway.fail("dma-1", S.INSTALL, times=None)
    planned, _ = harness.start_and_run(names=("dma-1", "dma-2"))
    harness.service.control(CancelRollout(planned.rollout_id), actor=ACTOR)

    rollout = harness.run(planned.rollout_id)

    assert rollout.state is RolloutState.CANCELLED
    assert harness.upgrade(planned, "dma-1").state is UpgradeState.CANCELLED
    assert harness.upgrade(planned, "dma-2").state is UpgradeState.COMPLETED
    harness.start(package=harness.upload("10.4.10.0-14900"))


def test_cancelling_a_failed_rollout_frees_its_cluster(harness: RolloutHarness) -> None:
    harness.gateway.fail("dma-1", S.INSTALL, times=None)
    planned, _ = harness.start_and_run(names=("dma-1",))

    harness.service.control(CancelRollout(planned.rollout_id), actor=ACTOR)

    harness.start(package=harness.upload("10.4.10.0-14900"))


def test_a_rollout_with_a_start_time_takes_no_step_before_it(harness: RolloutHarness) -> None:
    start_at = harness.clock.now() + timedelta(hours=2)

    planned, rollout = harness.start_and_run(names=("dma-1",), start_at=start_at)

    assert rollout.state is RolloutState.COMPLETED
    started = [e for e in harness.store.read_stream(f"rollout-{planned.rollout_id}")
               if isinstance(e.event, RolloutStarted)]
    assert [e.recorded_at for e in started] == [start_at]
    steps = [e for e in harness.upgrade_events(planned, "dma-1") if isinstance(e.event, StepStarted)]
    assert steps and all(e.recorded_at >= start_at for e in steps)


def test_planning_one_agent_of_a_failover_pair_warns_that_the_pair_would_run_different_versions(
        harness: RolloutHarness) -> None:
    planned = harness.service.plan(harness.spec(names=(MAIN,), failover_policy="backup-first",
                                                allow_partial_pair=True))

    assert planned.agents[0].after == () and not planned.agents[0].plan.switch_over
    assert f"agent {MAIN}: its failover partner {BACKUP} is not in this rollout; the pair would run different " \
           "versions" in planned.warnings
    assert f"agent {MAIN}: upgraded without its failover partner {BACKUP} (--allow-partial-pair): no switch-over; " \
           f"if {MAIN} is the active member the pair is down during its upgrade" in planned.warnings
    assert any(w.startswith(f"cluster {CLUSTER} will be left on mixed versions") for w in planned.warnings)


@pytest.mark.parametrize(("text", "expected"), [("50%", 2), ("25%", 1), ("26%", 2), ("1%", 1), ("3", 3)])
def test_max_concurrent_resolves_counts_and_percentages_of_the_agents(
        harness: RolloutHarness, text: str, expected: int) -> None:
    assert harness.service.plan(harness.spec(max_concurrent=text)).max_concurrent == expected


# -- outcomes -------------------------------------------------------------------------------------


def test_an_install_that_leaves_the_wrong_version_fails_that_upgrade_naming_both_versions(
        harness: RolloutHarness) -> None:
    harness.gateway.report_version("dma-1", "10.4.8.0-1")

    planned, rollout = harness.start_and_run(names=("dma-1", "dma-2"))

    assert rollout.state is RolloutState.FAILED
    upgrade = harness.upgrade(planned, "dma-1")
    assert upgrade.state is UpgradeState.FAILED
    assert upgrade.last_error is not None
    assert "10.4.8.0-1" in upgrade.last_error and PACKAGE_VERSION in upgrade.last_error
    assert not any(isinstance(e.event, AgentUpgradeCompleted) for e in harness.upgrade_events(planned, "dma-1"))
    assert S.START not in harness.steps_of("dma-1")
    assert all(harness.upgrade(planned, a.name).state is UpgradeState.COMPLETED
               for a in planned.agents if a.name != "dma-1")


def test_after_a_completed_rollout_every_agent_runs_the_package_version_with_history(
        harness: RolloutHarness) -> None:
    planned, rollout = harness.start_and_run()

    assert rollout.state is RolloutState.COMPLETED
    agents = harness.service.agents()
    assert sorted(a.name for a in agents) == sorted(a.name for a in planned.agents)
    for record in agents:
        assert record.cluster == CLUSTER
        assert record.version == PACKAGE_VERSION
        assert record.version_history == [START_VERSION, PACKAGE_VERSION]
        assert harness.gateway.agent(record.name).version == PACKAGE_VERSION
        assert harness.gateway.agent(record.name).dma_running
    assert harness.service.packages()[0].status == "completed"


def test_planning_appends_nothing_and_scheduling_happens_when_the_run_begins(harness: RolloutHarness) -> None:
    head = harness.head()
    harness.service.plan(harness.spec())
    assert harness.head() == head

    planned = harness.start(names=("dma-1", "dma-2"))
    assert not list(e for e in harness.store.read_category("upgrade-")
                    if isinstance(e.event, AgentUpgradeScheduled))
    harness.run(planned.rollout_id)
    assert len(harness.agent_by_upgrade_stream()) == len(planned.agents)
