"""The ``AgentUpgrade`` aggregate: given events, when a command is decided, then these events (or a refusal).

Each test states one behaviour. Decisions never mutate the aggregate, so every refusal is checked to
leave it exactly as it was (same version, same state, same everything).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any
from uuid import UUID

import pytest

from dma_upgrade.engine.agent_events import AgentVersionChanged
from dma_upgrade.engine.agent_upgrade import AgentUpgrade, upgrade_stream_id
from dma_upgrade.engine.decisions import version_change
from dma_upgrade.engine.errors import InvalidTransition
from dma_upgrade.engine.events import Event
from dma_upgrade.engine.inventory import AgentRecord
from dma_upgrade.engine.ports import StepOutcome
from dma_upgrade.engine.upgrade_events import (
    AgentUpgradeCancelled,
    AgentUpgradeCompleted,
    AgentUpgradeFailed,
    AgentUpgradePlan,
    AgentUpgradeRetried,
    AgentUpgradeScheduled,
    InstallPhaseReported,
    Step,
    StepFailed,
    StepOrder,
    StepStarted,
    StepSucceeded,
    UpgradeOptions,
)
from dma_upgrade.engine.upgrade_machine import UpgradeState

S = UpgradeState
UPGRADE_ID = UUID("00000000-0000-4000-8000-000000000001")

Command = Callable[[AgentUpgrade], list[Event]]


# -- helpers -----------------------------------------------------------------------------------


def plan_of(*, stop_snmp: bool = True, reboot: bool = False, auto_start: bool = True,
            switch_over: bool = False, upload_only: bool = False) -> AgentUpgradePlan:
    return AgentUpgradePlan(options=UpgradeOptions(stop_snmp=stop_snmp, reboot=reboot, auto_start=auto_start),
                            switch_over=switch_over, upload_only=upload_only)


DEFAULT = AgentUpgradePlan()
NO_SNMP = plan_of(stop_snmp=False)
SWITCHOVER = plan_of(switch_over=True)
REBOOT = plan_of(reboot=True)
SWITCHOVER_AND_REBOOT = plan_of(switch_over=True, reboot=True)
UPLOAD_ONLY = plan_of(upload_only=True)
MANUAL_START = plan_of(auto_start=False)


def scheduled(plan: AgentUpgradePlan = DEFAULT) -> AgentUpgradeScheduled:
    return AgentUpgradeScheduled(upgrade_id=UPGRADE_ID, agent="dma-01", package_sha256="ab" * 32,
                                 target_version="10.4.0.0-14000", plan=plan)


def key(step: Step, attempt: int) -> str:
    return f"{UPGRADE_ID}:{step.value}:{attempt}"


def started(step: Step, attempt: int = 1) -> StepStarted:
    return StepStarted(step=step, attempt=attempt, idempotency_key=key(step, attempt))


def given(*events: Event) -> AgentUpgrade:
    """An upgrade rebuilt from these events."""
    return AgentUpgrade.fold(events)


def execute(upgrade: AgentUpgrade, command: Command) -> list[Event]:
    """Decide ``command`` and apply what it decided (what the engine does after a successful append)."""
    events = command(upgrade)
    for event in events:
        upgrade.apply(event)
    return events


def start(step: Step) -> Command:
    return lambda u: u.start_step(step)


def finish(step: Step, version_after: str | None = None) -> Command:
    return lambda u: u.finish_step(step, version_after)


def fail_attempt(step: Step, error: str = "agent unreachable") -> Command:
    return lambda u: u.fail_attempt(step, error)


def fail(reason: str = "operator gave up") -> Command:
    return lambda u: u.fail(reason)


def complete() -> Command:
    return lambda u: u.complete()


def retry() -> Command:
    return lambda u: u.retry()


def cancel(reason: str = "change window closed") -> Command:
    return lambda u: u.cancel(reason)


def report_phase(phase: str = "copying files", index: int = 0, count: int = 3) -> Command:
    return lambda u: u.report_phase(phase, index, count)


def schedule_again(plan: AgentUpgradePlan = DEFAULT) -> Command:
    return lambda u: u.schedule(scheduled(plan))


def run_steps(*steps: Step) -> list[Command]:
    """Start and finish each step in turn."""
    return [c for step in steps for c in (start(step), finish(step))]


def upgrade_after(plan: AgentUpgradePlan, *commands: Command) -> AgentUpgrade:
    """A scheduled upgrade after these commands were decided and applied."""
    upgrade = given(scheduled(plan))
    for command in commands:
        execute(upgrade, command)
    return upgrade


def run_to_completion(plan: AgentUpgradePlan) -> tuple[AgentUpgrade, list[UpgradeState], list[Event]]:
    """Run every planned step, then complete; return the upgrade, the states it passed and the events."""
    upgrade = given(scheduled(plan))
    states = [upgrade.state]
    events: list[Event] = []
    for command in [*run_steps(*plan.steps), complete()]:
        for event in command(upgrade):
            upgrade.apply(event)
            events.append(event)
            if upgrade.state != states[-1]:
                states.append(upgrade.state)
    return upgrade, states, events


def snapshot(upgrade: AgentUpgrade) -> dict[str, Any]:
    return copy.deepcopy(vars(upgrade))


def assert_refused(upgrade: AgentUpgrade, command: Command, state: str, attempted: str) -> InvalidTransition:
    """``command`` raises InvalidTransition naming ``state`` and ``attempted``, and changes nothing."""
    before = snapshot(upgrade)
    version, current = upgrade.version, upgrade.state
    with pytest.raises(InvalidTransition) as caught:
        command(upgrade)
    message = str(caught.value)
    assert state in message
    assert attempted in message
    assert caught.value.current_state == state
    assert caught.value.attempted == attempted
    assert upgrade.version == version
    assert upgrade.state == current
    assert snapshot(upgrade) == before
    return caught.value


# -- scheduling --------------------------------------------------------------------------------


def test_scheduling_a_new_upgrade_records_the_scheduled_event() -> None:
    event = scheduled()
    assert AgentUpgrade().schedule(event) == [event]


def test_a_scheduled_upgrade_is_in_scheduled_at_version_one_with_nothing_done() -> None:
    upgrade = given(scheduled())
    assert (upgrade.state, upgrade.version, upgrade.done_steps, upgrade.step_in_progress) == (
        S.SCHEDULED, 1, [], None)
    assert upgrade.next_step == Step.UPLOAD


def test_the_upgrade_stream_is_named_after_the_upgrade_id() -> None:
    assert upgrade_stream_id(UPGRADE_ID) == f"upgrade-{UPGRADE_ID}"


# -- which steps each plan runs ----------------------------------------------------------------


@pytest.mark.parametrize(("plan", "steps"), [
    (DEFAULT, (Step.UPLOAD, Step.STOP_SNMP, Step.INSTALL, Step.START)),
    (NO_SNMP, (Step.UPLOAD, Step.INSTALL, Step.START)),
    (SWITCHOVER, (Step.UPLOAD, Step.STOP_SNMP, Step.INSTALL, Step.START, Step.SWITCH_OVER)),
    (REBOOT, (Step.UPLOAD, Step.STOP_SNMP, Step.INSTALL, Step.REBOOT, Step.START)),
    (SWITCHOVER_AND_REBOOT,
     (Step.UPLOAD, Step.STOP_SNMP, Step.INSTALL, Step.REBOOT, Step.START, Step.SWITCH_OVER)),
    (UPLOAD_ONLY, (Step.UPLOAD,)),
    (MANUAL_START, (Step.UPLOAD, Step.STOP_SNMP, Step.INSTALL)),
], ids=["default", "no-snmp", "switchover", "reboot", "switchover+reboot", "upload-only", "manual-start"])
def test_each_plan_runs_its_documented_steps_in_order(plan: AgentUpgradePlan,
                                                      steps: tuple[Step, ...]) -> None:
    assert plan.steps == steps


# -- the happy path with default options -------------------------------------------------------


def test_default_upgrade_passes_scheduled_uploaded_snmpstopped_installing_completed() -> None:
    upgrade, states, _ = run_to_completion(DEFAULT)
    assert states == [S.SCHEDULED, S.UPLOADED, S.SNMP_STOPPED, S.INSTALLING, S.COMPLETED]
    assert upgrade.done_steps == [Step.UPLOAD, Step.STOP_SNMP, Step.INSTALL, Step.START]


def test_default_upgrade_records_start_and_success_of_each_step_then_completion() -> None:
    _, _, events = run_to_completion(DEFAULT)
    steps = DEFAULT.steps
    expected: list[Event] = []
    for step in steps:
        expected += [StepStarted(step=step, attempt=1, idempotency_key=key(step, 1)),
                     StepSucceeded(step=step, attempt=1)]
    expected.append(AgentUpgradeCompleted(manual_start_needed=False))
    assert events == expected


def test_starting_the_upload_records_attempt_one_with_its_idempotency_key() -> None:
    upgrade = given(scheduled())
    assert upgrade.start_step(Step.UPLOAD) == [
        StepStarted(step=Step.UPLOAD, attempt=1, idempotency_key=key(Step.UPLOAD, 1))]


def test_starting_the_upload_keeps_the_upgrade_scheduled_with_the_upload_in_progress() -> None:
    upgrade = upgrade_after(DEFAULT, start(Step.UPLOAD))
    assert (upgrade.state, upgrade.step_in_progress, upgrade.attempts) == (
        S.SCHEDULED, Step.UPLOAD, {Step.UPLOAD: 1})


def test_finishing_the_upload_records_its_success_and_enters_uploaded() -> None:
    upgrade = given(scheduled(), started(Step.UPLOAD))
    events = upgrade.finish_step(Step.UPLOAD)
    assert events == [StepSucceeded(step=Step.UPLOAD, attempt=1)]
    upgrade.apply(events[0])
    assert (upgrade.state, upgrade.done_steps, upgrade.step_in_progress) == (S.UPLOADED, [Step.UPLOAD], None)


def test_finishing_stop_snmp_enters_snmpstopped() -> None:
    upgrade = upgrade_after(DEFAULT, *run_steps(Step.UPLOAD), start(Step.STOP_SNMP))
    states = [upgrade.state]
    execute(upgrade, finish(Step.STOP_SNMP))
    assert [*states, upgrade.state] == [S.UPLOADED, S.SNMP_STOPPED]


def test_starting_the_install_enters_installing_at_once() -> None:
    upgrade = upgrade_after(DEFAULT, *run_steps(Step.UPLOAD, Step.STOP_SNMP))
    events = execute(upgrade, start(Step.INSTALL))
    assert events == [StepStarted(step=Step.INSTALL, attempt=1, idempotency_key=key(Step.INSTALL, 1))]
    assert (upgrade.state, upgrade.step_in_progress) == (S.INSTALLING, Step.INSTALL)


def test_install_phases_are_recorded_while_the_install_runs() -> None:
    upgrade = upgrade_after(DEFAULT, *run_steps(Step.UPLOAD, Step.STOP_SNMP), start(Step.INSTALL))
    events = execute(upgrade, report_phase("copying files", 1, 4))
    assert events == [InstallPhaseReported(phase="copying files", phase_index=1, phase_count=4)]
    assert (upgrade.install_phase, upgrade.state) == ("copying files", S.INSTALLING)


def test_finishing_the_install_stays_in_installing_and_keeps_the_version_after() -> None:
    upgrade = upgrade_after(DEFAULT, *run_steps(Step.UPLOAD, Step.STOP_SNMP), start(Step.INSTALL))
    events = execute(upgrade, finish(Step.INSTALL, "10.4.0.0-14000"))
    assert events == [StepSucceeded(step=Step.INSTALL, attempt=1, version_after="10.4.0.0-14000")]
    assert (upgrade.state, upgrade.version_after, upgrade.install_phase) == (
        S.INSTALLING, "10.4.0.0-14000", None)


def test_completing_after_every_step_records_completion_with_the_version_after() -> None:
    upgrade = upgrade_after(DEFAULT, *run_steps(Step.UPLOAD, Step.STOP_SNMP), start(Step.INSTALL),
                            finish(Step.INSTALL, "10.4.0.0-14000"), *run_steps(Step.START))
    events = execute(upgrade, complete())
    assert events == [AgentUpgradeCompleted(version_after="10.4.0.0-14000", manual_start_needed=False)]
    assert upgrade.state == S.COMPLETED


def test_folding_the_recorded_events_rebuilds_the_same_upgrade() -> None:
    upgrade, _, events = run_to_completion(DEFAULT)
    rebuilt = given(scheduled(), *events)
    assert vars(rebuilt) == vars(upgrade)
    assert rebuilt.version == len(events) + 1


# -- the options that change the path ----------------------------------------------------------


def test_with_stop_snmp_off_the_upgrade_goes_from_uploaded_straight_to_installing() -> None:
    upgrade, states, _ = run_to_completion(NO_SNMP)
    assert states == [S.SCHEDULED, S.UPLOADED, S.INSTALLING, S.COMPLETED]
    assert Step.STOP_SNMP not in upgrade.done_steps


def test_with_stop_snmp_off_starting_stop_snmp_is_refused() -> None:
    upgrade = upgrade_after(NO_SNMP, *run_steps(Step.UPLOAD))
    error = assert_refused(upgrade, start(Step.STOP_SNMP), "Uploaded", "start stop_snmp")
    assert "install" in str(error)


def test_with_switchover_the_upgrade_visits_switchedover_after_installing() -> None:
    _, states, _ = run_to_completion(SWITCHOVER)
    assert states == [S.SCHEDULED, S.UPLOADED, S.SNMP_STOPPED, S.INSTALLING, S.SWITCHED_OVER, S.COMPLETED]


def test_switchedover_is_entered_when_the_switchover_succeeds_not_when_it_starts() -> None:
    upgrade = upgrade_after(SWITCHOVER, *run_steps(Step.UPLOAD, Step.STOP_SNMP, Step.INSTALL, Step.START),
                            start(Step.SWITCH_OVER))
    states = [upgrade.state]
    execute(upgrade, finish(Step.SWITCH_OVER))
    assert [*states, upgrade.state] == [S.INSTALLING, S.SWITCHED_OVER]


def test_with_reboot_the_upgrade_visits_rebooting_after_installing() -> None:
    _, states, _ = run_to_completion(REBOOT)
    assert states == [S.SCHEDULED, S.UPLOADED, S.SNMP_STOPPED, S.INSTALLING, S.REBOOTING, S.COMPLETED]


def test_rebooting_is_entered_when_the_reboot_starts() -> None:
    upgrade = upgrade_after(REBOOT, *run_steps(Step.UPLOAD, Step.STOP_SNMP, Step.INSTALL))
    execute(upgrade, start(Step.REBOOT))
    assert (upgrade.state, upgrade.step_in_progress) == (S.REBOOTING, Step.REBOOT)


def test_with_switchover_and_reboot_the_upgrade_reboots_then_switches_over() -> None:
    _, states, _ = run_to_completion(SWITCHOVER_AND_REBOOT)
    assert states == [S.SCHEDULED, S.UPLOADED, S.SNMP_STOPPED, S.INSTALLING, S.REBOOTING,
                      S.SWITCHED_OVER, S.COMPLETED]


def test_with_switchover_and_reboot_the_switchover_cannot_start_before_the_reboot_and_start() -> None:
    upgrade = upgrade_after(SWITCHOVER_AND_REBOOT, *run_steps(Step.UPLOAD, Step.STOP_SNMP, Step.INSTALL))
    assert_refused(upgrade, start(Step.SWITCH_OVER), "Installing", "start switch_over")
    upgrade = upgrade_after(SWITCHOVER_AND_REBOOT, *run_steps(Step.UPLOAD, Step.STOP_SNMP, Step.INSTALL, Step.REBOOT))
    assert_refused(upgrade, start(Step.SWITCH_OVER), "Rebooting", "start switch_over")


def test_a_history_recorded_with_the_legacy_order_still_folds() -> None:
    legacy = SWITCHOVER_AND_REBOOT.model_copy(update={"step_order": StepOrder.LEGACY_SWITCH_BEFORE_REBOOT})
    _, states, _ = run_to_completion(legacy)
    assert states == [S.SCHEDULED, S.UPLOADED, S.SNMP_STOPPED, S.INSTALLING, S.SWITCHED_OVER,
                      S.REBOOTING, S.COMPLETED]


def test_upload_only_runs_only_the_upload_and_completes_from_uploaded() -> None:
    upgrade, states, events = run_to_completion(UPLOAD_ONLY)
    assert states == [S.SCHEDULED, S.UPLOADED, S.COMPLETED]
    assert upgrade.done_steps == [Step.UPLOAD]
    assert [type(e) for e in events] == [StepStarted, StepSucceeded, AgentUpgradeCompleted]
    assert events[-1] == AgentUpgradeCompleted(manual_start_needed=False)


def test_upload_only_refuses_to_start_the_install() -> None:
    upgrade = upgrade_after(UPLOAD_ONLY, *run_steps(Step.UPLOAD))
    assert_refused(upgrade, start(Step.INSTALL), "Uploaded", "start install")
    assert_refused(upgrade, start(Step.STOP_SNMP), "Uploaded", "start stop_snmp")


def test_upload_only_with_auto_start_off_needs_no_manual_start() -> None:
    _, _, events = run_to_completion(plan_of(upload_only=True, auto_start=False))
    assert events[-1] == AgentUpgradeCompleted(manual_start_needed=False)


def test_with_auto_start_off_there_is_no_start_step_and_completion_asks_for_a_manual_start() -> None:
    upgrade, states, events = run_to_completion(MANUAL_START)
    assert Step.START not in MANUAL_START.steps
    assert all(getattr(e, "step", None) != Step.START for e in events)
    assert events[-1] == AgentUpgradeCompleted(manual_start_needed=True)
    assert upgrade.manual_start_needed is True
    assert states[-1] == S.COMPLETED


def test_with_auto_start_off_starting_the_start_step_is_refused() -> None:
    upgrade = upgrade_after(MANUAL_START, *run_steps(Step.UPLOAD, Step.STOP_SNMP, Step.INSTALL))
    assert_refused(upgrade, start(Step.START), "Installing", "start start")


# -- failed attempts ---------------------------------------------------------------------------


def test_a_failed_attempt_records_the_attempt_number_and_error() -> None:
    upgrade = given(scheduled(), started(Step.UPLOAD))
    assert upgrade.fail_attempt(Step.UPLOAD, "connection reset") == [
        StepFailed(step=Step.UPLOAD, attempt=1, error="connection reset")]


def test_a_failed_attempt_frees_the_step_and_keeps_the_state() -> None:
    upgrade = upgrade_after(DEFAULT, start(Step.UPLOAD), fail_attempt(Step.UPLOAD, "connection reset"))
    assert (upgrade.state, upgrade.step_in_progress, upgrade.last_error) == (
        S.SCHEDULED, None, "connection reset")
    assert upgrade.done_steps == []


def test_a_failed_attempt_can_be_attempted_again_as_attempt_two_with_a_new_idempotency_key() -> None:
    upgrade = upgrade_after(DEFAULT, start(Step.UPLOAD), fail_attempt(Step.UPLOAD))
    events = upgrade.start_step(Step.UPLOAD)
    assert events == [StepStarted(step=Step.UPLOAD, attempt=2, idempotency_key=key(Step.UPLOAD, 2))]
    assert key(Step.UPLOAD, 2) != key(Step.UPLOAD, 1)


def test_the_second_attempt_succeeds_as_attempt_two() -> None:
    upgrade = upgrade_after(DEFAULT, start(Step.UPLOAD), fail_attempt(Step.UPLOAD), start(Step.UPLOAD))
    assert upgrade.finish_step(Step.UPLOAD) == [StepSucceeded(step=Step.UPLOAD, attempt=2)]


def test_a_failed_install_attempt_stays_in_installing_and_the_install_can_start_again() -> None:
    upgrade = upgrade_after(DEFAULT, *run_steps(Step.UPLOAD, Step.STOP_SNMP), start(Step.INSTALL),
                            fail_attempt(Step.INSTALL, "installer exited 1603"))
    assert (upgrade.state, upgrade.step_in_progress) == (S.INSTALLING, None)
    assert upgrade.start_step(Step.INSTALL) == [
        StepStarted(step=Step.INSTALL, attempt=2, idempotency_key=key(Step.INSTALL, 2))]


def test_a_failed_reboot_attempt_stays_in_rebooting_and_the_reboot_can_start_again() -> None:
    upgrade = upgrade_after(REBOOT, *run_steps(Step.UPLOAD, Step.STOP_SNMP, Step.INSTALL),
                            start(Step.REBOOT), fail_attempt(Step.REBOOT))
    assert upgrade.state == S.REBOOTING
    assert upgrade.start_step(Step.REBOOT) == [
        StepStarted(step=Step.REBOOT, attempt=2, idempotency_key=key(Step.REBOOT, 2))]


# -- fail and retry ----------------------------------------------------------------------------

REACH: dict[str, tuple[AgentUpgradePlan, list[Command], UpgradeState, Step | None]] = {
    "Scheduled": (DEFAULT, [], S.SCHEDULED, None),
    "Scheduled, upload running": (DEFAULT, [start(Step.UPLOAD)], S.SCHEDULED, Step.UPLOAD),
    "Uploaded": (DEFAULT, run_steps(Step.UPLOAD), S.UPLOADED, None),
    "SNMPStopped": (DEFAULT, run_steps(Step.UPLOAD, Step.STOP_SNMP), S.SNMP_STOPPED, None),
    "Installing, install running": (DEFAULT, [*run_steps(Step.UPLOAD, Step.STOP_SNMP), start(Step.INSTALL)],
                                    S.INSTALLING, Step.INSTALL),
    "Installing, install done": (DEFAULT, run_steps(Step.UPLOAD, Step.STOP_SNMP, Step.INSTALL),
                                 S.INSTALLING, None),
    "SwitchedOver": (SWITCHOVER, run_steps(Step.UPLOAD, Step.STOP_SNMP, Step.INSTALL, Step.START, Step.SWITCH_OVER),
                     S.SWITCHED_OVER, None),
    "Rebooting, reboot running": (REBOOT, [*run_steps(Step.UPLOAD, Step.STOP_SNMP, Step.INSTALL),
                                           start(Step.REBOOT)], S.REBOOTING, Step.REBOOT),
}


@pytest.mark.parametrize("where", list(REACH))
def test_failing_records_the_step_in_progress_and_enters_failed(where: str) -> None:
    plan, commands, state, running = REACH[where]
    upgrade = upgrade_after(plan, *commands)
    assert upgrade.state == state
    events = execute(upgrade, fail("disk full"))
    assert events == [AgentUpgradeFailed(step=running, reason="disk full")]
    assert (upgrade.state, upgrade.resume_state, upgrade.step_in_progress, upgrade.last_error) == (
        S.FAILED, state, None, "disk full")


@pytest.mark.parametrize("where", list(REACH))
def test_retry_resumes_in_the_state_the_upgrade_failed_in(where: str) -> None:
    plan, commands, state, _ = REACH[where]
    upgrade = upgrade_after(plan, *commands, fail())
    events = execute(upgrade, retry())
    assert events == [AgentUpgradeRetried(resume_state=state.value)]
    assert (upgrade.state, upgrade.resume_state, upgrade.retries) == (state, None, 1)


@pytest.mark.parametrize("where", list(REACH))
def test_a_retried_upgrade_can_run_to_completion(where: str) -> None:
    plan, commands, _, _ = REACH[where]
    upgrade = upgrade_after(plan, *commands, fail(), retry())
    while (step := upgrade.next_step) is not None:
        execute(upgrade, start(step))
        execute(upgrade, finish(step))
    execute(upgrade, complete())
    assert upgrade.state == S.COMPLETED
    assert upgrade.done_steps == list(plan.steps)


def test_failing_inside_installing_then_retrying_returns_to_installing_and_install_starts_again() -> None:
    upgrade = upgrade_after(DEFAULT, *run_steps(Step.UPLOAD, Step.STOP_SNMP), start(Step.INSTALL),
                            fail("installer hung"), retry())
    assert (upgrade.state, upgrade.step_in_progress) == (S.INSTALLING, None)
    assert upgrade.start_step(Step.INSTALL) == [
        StepStarted(step=Step.INSTALL, attempt=2, idempotency_key=key(Step.INSTALL, 2))]


def test_a_failed_upgrade_refuses_step_commands_until_retried() -> None:
    upgrade = upgrade_after(DEFAULT, start(Step.UPLOAD), fail())
    assert_refused(upgrade, start(Step.UPLOAD), "Failed", "start upload")
    assert_refused(upgrade, finish(Step.UPLOAD), "Failed", "finish upload")
    assert_refused(upgrade, complete(), "Failed", "complete")
    assert_refused(upgrade, fail(), "Failed", "fail")


def test_a_failed_upgrade_can_fail_again_after_a_retry() -> None:
    upgrade = upgrade_after(DEFAULT, *run_steps(Step.UPLOAD), fail(), retry(), fail("again"), retry())
    assert (upgrade.state, upgrade.retries, upgrade.last_error) == (S.UPLOADED, 2, "again")


# -- cancel ------------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["Scheduled", "Uploaded", "SNMPStopped", "Failed"])
def test_cancel_is_allowed_before_the_installation_and_when_failed(where: str) -> None:
    commands = {"Scheduled": [], "Uploaded": run_steps(Step.UPLOAD),
                "SNMPStopped": run_steps(Step.UPLOAD, Step.STOP_SNMP),
                "Failed": [*run_steps(Step.UPLOAD, Step.STOP_SNMP), start(Step.INSTALL), fail()]}[where]
    upgrade = upgrade_after(DEFAULT, *commands)
    assert upgrade.state == where
    events = execute(upgrade, cancel("window closed"))
    assert events == [AgentUpgradeCancelled(reason="window closed")]
    assert (upgrade.state, upgrade.step_in_progress) == (S.CANCELLED, None)


@pytest.mark.parametrize("where", ["Installing, install running", "Installing, install done",
                                   "SwitchedOver", "Rebooting, reboot running"])
def test_cancel_is_refused_once_the_installation_began_and_the_message_names_the_state(where: str) -> None:
    plan, commands, state, _ = REACH[where]
    upgrade = upgrade_after(plan, *commands)
    error = assert_refused(upgrade, cancel(), state.value, "cancel")
    assert str(error).startswith(f"cannot cancel from state {state.value}")


def test_cancel_is_refused_while_a_step_runs_even_before_the_installation() -> None:
    upgrade = upgrade_after(DEFAULT, start(Step.UPLOAD))
    error = assert_refused(upgrade, cancel(), "Scheduled", "cancel")
    assert "upload" in str(error)


# -- illegal commands --------------------------------------------------------------------------

ILLEGAL: dict[str, tuple[AgentUpgradePlan, list[Command], Command, str, str]] = {
    # name: (plan, commands before, illegal command, state named, move named)
    "complete before any step": (DEFAULT, [], complete(), "Scheduled", "complete"),
    "complete with the install running": (
        DEFAULT, [*run_steps(Step.UPLOAD, Step.STOP_SNMP), start(Step.INSTALL)], complete(),
        "Installing", "complete"),
    "complete before the start step": (
        DEFAULT, run_steps(Step.UPLOAD, Step.STOP_SNMP, Step.INSTALL), complete(), "Installing", "complete"),
    "complete before the switchover": (
        SWITCHOVER, run_steps(Step.UPLOAD, Step.STOP_SNMP, Step.INSTALL), complete(),
        "Installing", "complete"),
    "start install before upload": (DEFAULT, [], start(Step.INSTALL), "Scheduled", "start install"),
    "start stop_snmp before upload": (DEFAULT, [], start(Step.STOP_SNMP), "Scheduled", "start stop_snmp"),
    "start install before stop_snmp": (
        DEFAULT, run_steps(Step.UPLOAD), start(Step.INSTALL), "Uploaded", "start install"),
    "start upload twice": (DEFAULT, run_steps(Step.UPLOAD), start(Step.UPLOAD), "Uploaded", "start upload"),
    "start reboot without the reboot option": (
        DEFAULT, run_steps(Step.UPLOAD, Step.STOP_SNMP, Step.INSTALL), start(Step.REBOOT),
        "Installing", "start reboot"),
    "start switchover without the switchover option": (
        DEFAULT, run_steps(Step.UPLOAD, Step.STOP_SNMP, Step.INSTALL), start(Step.SWITCH_OVER),
        "Installing", "start switch_over"),
    "start the same step while it runs": (
        DEFAULT, [start(Step.UPLOAD)], start(Step.UPLOAD), "Scheduled", "start upload"),
    "start the next step while another runs": (
        DEFAULT, [*run_steps(Step.UPLOAD), start(Step.STOP_SNMP)], start(Step.INSTALL),
        "Uploaded", "start install"),
    "finish a step that was not started": (DEFAULT, [], finish(Step.UPLOAD), "Scheduled", "finish upload"),
    "finish another step than the running one": (
        DEFAULT, [start(Step.UPLOAD)], finish(Step.STOP_SNMP), "Scheduled", "finish stop_snmp"),
    "finish a step twice": (
        DEFAULT, run_steps(Step.UPLOAD), finish(Step.UPLOAD), "Uploaded", "finish upload"),
    "fail an attempt of a step that is not running": (
        DEFAULT, [], fail_attempt(Step.UPLOAD), "Scheduled", "fail an attempt of upload"),
    "report a phase outside the install": (
        DEFAULT, run_steps(Step.UPLOAD), report_phase(), "Uploaded", "report an install phase"),
    "report a phase after the install finished": (
        DEFAULT, run_steps(Step.UPLOAD, Step.STOP_SNMP, Step.INSTALL), report_phase(),
        "Installing", "report an install phase"),
    "retry when scheduled": (DEFAULT, [], retry(), "Scheduled", "retry"),
    "retry while installing": (
        DEFAULT, [*run_steps(Step.UPLOAD, Step.STOP_SNMP), start(Step.INSTALL)], retry(),
        "Installing", "retry"),
    "retry twice": (DEFAULT, [fail(), retry()], retry(), "Scheduled", "retry"),
    "fail a failed upgrade": (DEFAULT, [fail()], fail(), "Failed", "fail"),
    "schedule twice": (DEFAULT, [], schedule_again(), "Scheduled", "schedule"),
    "schedule a running upgrade again": (
        DEFAULT, run_steps(Step.UPLOAD), schedule_again(UPLOAD_ONLY), "Uploaded", "schedule"),
}


@pytest.mark.parametrize("name", list(ILLEGAL))
def test_an_illegal_command_is_refused_naming_state_and_move_and_changes_nothing(name: str) -> None:
    plan, commands, command, state, attempted = ILLEGAL[name]
    upgrade = upgrade_after(plan, *commands)
    assert upgrade.state == state
    assert_refused(upgrade, command, state, attempted)


AFTER_THE_END: dict[str, tuple[Command, str]] = {
    "start upload": (start(Step.UPLOAD), "start upload"),
    "start install": (start(Step.INSTALL), "start install"),
    "finish upload": (finish(Step.UPLOAD), "finish upload"),
    "fail an attempt": (fail_attempt(Step.INSTALL), "fail an attempt of install"),
    "report a phase": (report_phase(), "report an install phase"),
    "complete": (complete(), "complete"),
    "fail": (fail(), "fail"),
    "retry": (retry(), "retry"),
    "cancel": (cancel(), "cancel"),
    "schedule": (schedule_again(), "schedule"),
}


@pytest.mark.parametrize("name", list(AFTER_THE_END))
def test_a_completed_upgrade_refuses_every_command(name: str) -> None:
    upgrade, _, _ = run_to_completion(DEFAULT)
    command, attempted = AFTER_THE_END[name]
    assert_refused(upgrade, command, "Completed", attempted)


@pytest.mark.parametrize("name", [name for name in AFTER_THE_END if name != "retry"])
def test_a_cancelled_upgrade_refuses_every_command_but_a_retry(name: str) -> None:
    upgrade = upgrade_after(DEFAULT, *run_steps(Step.UPLOAD), cancel())
    command, attempted = AFTER_THE_END[name]
    assert_refused(upgrade, command, "Cancelled", attempted)


def test_a_cancelled_upgrade_retried_when_its_rollout_is_continued_resumes_where_it_was_cancelled() -> None:
    upgrade = upgrade_after(DEFAULT, *run_steps(Step.UPLOAD), cancel())
    execute(upgrade, retry())
    assert upgrade.state is UpgradeState.UPLOADED
    assert upgrade.next_step is Step.STOP_SNMP
    assert upgrade.retries == 1


def test_a_failed_upgrade_cancelled_then_retried_resumes_where_it_failed() -> None:
    upgrade = upgrade_after(DEFAULT, *run_steps(Step.UPLOAD, Step.STOP_SNMP), start(Step.INSTALL), fail(), cancel())
    execute(upgrade, retry())
    assert upgrade.state is UpgradeState.INSTALLING
    assert upgrade.next_step is Step.INSTALL


def test_an_upgrade_that_was_never_scheduled_refuses_commands() -> None:
    upgrade = AgentUpgrade()
    for command, attempted in [(start(Step.UPLOAD), "start upload"), (complete(), "complete")]:
        assert_refused(upgrade, command, "none", attempted)


def test_the_fold_refuses_a_history_that_breaks_the_state_table() -> None:
    with pytest.raises(InvalidTransition, match="Scheduled"):
        given(scheduled(), AgentUpgradeCompleted())


@pytest.mark.parametrize(("running", "reported", "changes"), [
    ("10.4.0.0-14000", "10.4.0.0(CU0)-14000", False), ("10.4.0", "10.4.0.0", False),
    ("10.3.0.0-13000", "10.4.0.0-14000", True)])
def test_an_install_reporting_the_running_version_in_another_notation_changes_no_version(
        running: str, reported: str, changes: bool) -> None:
    agent = AgentRecord(name="dma-01", address="10.0.0.1", cluster="north", version=running)
    events = version_change(agent, given(scheduled()), Step.INSTALL, StepOutcome(version_after=reported))
    assert [type(e) for e in events] == ([AgentVersionChanged] if changes else [])
