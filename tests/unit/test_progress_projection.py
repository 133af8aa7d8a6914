"""The progress projection: the attempt of the step in flight, agents a cancelled rollout never began, steps in doubt,
switch-overs awaiting a manual start, the plan's notes, and when a scheduled rollout started and how late."""

from __future__ import annotations

import io
from datetime import timedelta
from uuid import UUID, uuid4

import pytest
from rich.console import Console

from dma_upgrade.adapters.clock import utc_text
from dma_upgrade.adapters.read.progress_view import activity, progress_table, scheduled_start, start_line
from dma_upgrade.adapters.shapes.models import AgentProgressOut, RolloutProgressOut
from dma_upgrade.engine.events import Event
from dma_upgrade.engine.rollout import Rollout
from dma_upgrade.engine.rollout_events import (
    FailoverPolicy,
    RolloutCancelled,
    RolloutPlanned,
    RolloutStarted,
    rollout_stream_id,
)
from dma_upgrade.engine.upgrade_events import (
    AgentUpgradeFailed,
    AgentUpgradePlan,
    InstallPhaseReported,
    ManualStartAwaited,
    Step,
    StepDoubtResolved,
    StepFailed,
    StepInDoubt,
    StepStarted,
    StepStatusLearned,
    StepSucceeded,
    UpgradeOptions,
)
from dma_upgrade.projections.progress import AGENTS, ROLLOUTS, ProgressProjection
from dma_upgrade.projections.tables import MemoryRows, Row
from tests.unit.test_projections_history_inventory_timers import T0, Feed, planned, run, scheduled_upgrade, table


def test_the_activity_counts_attempts_of_the_step_in_flight_not_of_the_whole_upgrade() -> None:
    feed, rollout_id = Feed(), uuid4()
    plan = planned(rollout_id)
    agent = plan.agents[0]
    stream = f"upgrade-{agent.upgrade_id}"
    rows = run(ProgressProjection(), [
        feed(rollout_stream_id(rollout_id), plan),
        feed(stream, scheduled_upgrade(plan)),
        feed(stream, StepStarted(step=Step.UPLOAD, attempt=1, idempotency_key="k1")),
        feed(stream, StepSucceeded(step=Step.UPLOAD, attempt=1)),
        feed(stream, StepStarted(step=Step.INSTALL, attempt=1, idempotency_key="k2")),
    ])
    row = table(rows, AGENTS.name)[0]
    assert (row["step"], row["step_attempt"], row["attempts"]) == ("install", 1, 2)

    run(ProgressProjection(), [feed(stream, StepFailed(step=Step.INSTALL, attempt=1, error="boom")),
                               feed(stream, StepStarted(step=Step.INSTALL, attempt=2, idempotency_key="k3"))], rows)
    row = table(rows, AGENTS.name)[0]
    assert (row["step"], row["step_attempt"], row["attempts"]) == ("install", 2, 3)


def test_cancelling_a_rollout_cancels_the_agents_it_never_began_and_leaves_the_others() -> None:
    feed, rollout_id = Feed(), uuid4()
    plan = planned(rollout_id, agents=("dma-1", "dma-2", "dma-3"))
    began = plan.agents[0]
    stream = f"upgrade-{began.upgrade_id}"
    rows = run(ProgressProjection(), [
        feed(rollout_stream_id(rollout_id), plan),
        feed(rollout_stream_id(rollout_id), RolloutStarted()),
        feed(stream, scheduled_upgrade(plan)),
        feed(stream, StepStarted(step=Step.UPLOAD, attempt=1, idempotency_key="k1")),
        feed(rollout_stream_id(rollout_id), RolloutCancelled(reason="operator")),
    ])
    states = {r["agent"]: r["state"] for r in table(rows, AGENTS.name)}
    assert states == {"dma-1": "Scheduled", "dma-2": "Cancelled", "dma-3": "Cancelled"}  # dma-1 is uploading
    rollout = table(rows, ROLLOUTS.name)[0]
    assert (rollout["state"], rollout["waiting"], rollout["in_flight"], rollout["cancelled"]) == ("Cancelled", 0, 1, 2)


def _switch_over_plan(rollout_id: UUID) -> RolloutPlanned:
    """A backup-first rollout of a pair, Auto Start off: the backup switches over once started by hand."""
    plan = planned(rollout_id, agents=("dma-main", "dma-backup"))
    note = "pair dma-main/dma-backup: dma-backup switches over only once started by hand (Auto Start off)"
    switch = AgentUpgradePlan(options=UpgradeOptions(auto_start=False), switch_over=True)
    agents = tuple(a.model_copy(update={"plan": switch, "notes": (note,)}) for a in plan.agents)
    return plan.model_copy(update={"agents": agents, "notes": (note,), "failover_policy": FailoverPolicy.BACKUP_FIRST})


def _activity(agent: Row) -> str:
    """``activity`` of the agent's public shape, built straight from its progress row (as the local path does)."""
    return activity(AgentProgressOut(**agent))


def _start_line(rollout: Row) -> str | None:
    return start_line(RolloutProgressOut.of(rollout, []))


def _agent_row(rows: MemoryRows, name: str) -> Row:
    return next(r for r in table(rows, AGENTS.name) if r["agent"] == name)


def test_a_step_in_doubt_shows_as_such_until_the_agent_says_what_it_knows() -> None:
    feed, rollout_id = Feed(), uuid4()
    plan = planned(rollout_id)
    stream = f"upgrade-{plan.agents[0].upgrade_id}"
    rows = run(ProgressProjection(), [
        feed(rollout_stream_id(rollout_id), plan),
        feed(stream, scheduled_upgrade(plan)),
        feed(stream, StepStarted(step=Step.UPLOAD, attempt=1, idempotency_key="k1")),
        feed(stream, StepSucceeded(step=Step.UPLOAD, attempt=1)),
        feed(stream, StepStarted(step=Step.INSTALL, attempt=1, idempotency_key="k2")),
        feed(stream, InstallPhaseReported(phase="copying", phase_index=0, phase_count=3)),
        feed(stream, StepInDoubt(step=Step.INSTALL, attempt=1, reason="no answer within 1800 s")),
    ])
    row = table(rows, AGENTS.name)[0]
    assert (row["state"], row["step"], row["in_doubt"], row["last_error"]) == (
        "Installing", "install", True, "no answer within 1800 s")
    assert _activity(row) == ("in doubt: install (attempt 1): no answer within 1800 s — ask pending; resolve with "
                             "dma-upgrade upgrade resolve")
    assert table(rows, ROLLOUTS.name)[0]["in_flight"] == 1

    run(ProgressProjection(), [feed(stream, StepStatusLearned(step=Step.INSTALL, attempt=1, status="running"))], rows)
    row = table(rows, AGENTS.name)[0]
    assert (row["step"], row["in_doubt"]) == ("install", False)
    assert _activity(row) == "Installing: copying"


def test_a_doubt_resolved_as_applied_counts_the_step_done_and_enters_its_state() -> None:
    feed, rollout_id = Feed(), uuid4()
    plan = planned(rollout_id, agents=("dma-1", "dma-2"))
    first, second = (f"upgrade-{a.upgrade_id}" for a in plan.agents)
    rows = run(ProgressProjection(), [
        feed(rollout_stream_id(rollout_id), plan),
        feed(first, scheduled_upgrade(plan, 0)),
        feed(first, StepStarted(step=Step.UPLOAD, attempt=1, idempotency_key="k1")),
        feed(first, StepInDoubt(step=Step.UPLOAD, attempt=1, reason="cut")),
        feed(first, StepDoubtResolved(step=Step.UPLOAD, attempt=1, applied=True)),
        feed(second, scheduled_upgrade(plan, 1)),
        feed(second, StepStarted(step=Step.UPLOAD, attempt=1, idempotency_key="k2")),
        feed(second, StepSucceeded(step=Step.UPLOAD, attempt=1)),
        feed(second, StepStarted(step=Step.STOP_SNMP, attempt=1, idempotency_key="k3")),
        feed(second, StepSucceeded(step=Step.STOP_SNMP, attempt=1)),
        feed(second, StepStarted(step=Step.INSTALL, attempt=1, idempotency_key="k4")),
        feed(second, StepInDoubt(step=Step.INSTALL, attempt=1, reason="timed out")),
        feed(second, StepDoubtResolved(step=Step.INSTALL, attempt=1, applied=True, version_after="10.4.9.0-14794")),
    ])
    resolved_upload, resolved_install = _agent_row(rows, "dma-1"), _agent_row(rows, "dma-2")
    assert (resolved_upload["state"], resolved_upload["steps_done"], resolved_upload["step"],
            resolved_upload["in_doubt"]) == ("Uploaded", 1, None, False)
    assert resolved_upload["durations"] == {"Scheduled": 40.0}  # planned, scheduled, started, in doubt, resolved
    assert (resolved_install["state"], resolved_install["steps_done"], resolved_install["step"],
            resolved_install["in_doubt"], resolved_install["version_after"]) == (
        "Installing", 3, None, False, "10.4.9.0-14794")
    assert _activity(resolved_install) == "waiting"


def _after_an_upload_in_doubt(then: Event) -> Row:
    """The agent's progress row once its upload went into doubt and ``then`` was recorded."""
    feed, rollout_id = Feed(), uuid4()
    plan = planned(rollout_id)
    stream = f"upgrade-{plan.agents[0].upgrade_id}"
    rows = run(ProgressProjection(), [
        feed(rollout_stream_id(rollout_id), plan),
        feed(stream, scheduled_upgrade(plan)),
        feed(stream, StepStarted(step=Step.UPLOAD, attempt=1, idempotency_key="k1")),
        feed(stream, StepInDoubt(step=Step.UPLOAD, attempt=1, reason="cut")),
        feed(stream, then),
    ])
    return table(rows, AGENTS.name)[0]


def test_a_doubt_resolved_as_not_applied_leaves_the_step_in_flight_to_be_sent_again() -> None:
    row = _after_an_upload_in_doubt(StepDoubtResolved(step=Step.UPLOAD, attempt=1, applied=False))
    assert (row["state"], row["step"], row["steps_done"], row["in_doubt"]) == ("Scheduled", "upload", 0, False)
    assert _activity(row) == "upload (attempt 1)"


def test_a_failed_upgrade_is_no_longer_in_doubt() -> None:
    row = _after_an_upload_in_doubt(AgentUpgradeFailed(step=Step.UPLOAD, reason="given up"))
    assert (row["state"], row["in_doubt"], row["last_error"]) == ("Failed", False, "given up")
    assert _activity(row) == "given up"


def test_a_switch_over_awaiting_a_manual_start_says_whom_to_start_until_it_begins() -> None:
    feed, rollout_id = Feed(), uuid4()
    plan = _switch_over_plan(rollout_id)
    stream = f"upgrade-{plan.agents[1].upgrade_id}"
    events = [feed(rollout_stream_id(rollout_id), plan), feed(stream, scheduled_upgrade(plan, 1))]
    for step in (Step.UPLOAD, Step.STOP_SNMP, Step.INSTALL):
        events += [feed(stream, StepStarted(step=step, attempt=1, idempotency_key=step.value)),
                   feed(stream, StepSucceeded(step=step, attempt=1))]
    rows = run(ProgressProjection(), [*events, feed(stream, ManualStartAwaited(agent="dma-backup"))])
    row = _agent_row(rows, "dma-backup")
    assert row["awaiting_manual_start"] == "dma-backup"
    assert _activity(row) == "waiting for a manual start of dma-backup before the switch-over"

    run(ProgressProjection(), [feed(stream, StepStarted(step=Step.SWITCH_OVER, attempt=1, idempotency_key="s"))],
        rows)
    row = _agent_row(rows, "dma-backup")
    assert row["awaiting_manual_start"] is None
    assert _activity(row) == "switch over (attempt 1)"


def test_the_plans_notes_are_kept_on_the_rollout_and_on_each_agent() -> None:
    feed, rollout_id = Feed(), uuid4()
    plan = _switch_over_plan(rollout_id)
    rows = run(ProgressProjection(), [feed(rollout_stream_id(rollout_id), plan)])
    assert table(rows, ROLLOUTS.name)[0]["notes"] == list(plan.notes)
    assert [r["notes"] for r in table(rows, AGENTS.name)] == [list(plan.notes)] * 2
    assert all(r["in_doubt"] is False and r["awaiting_manual_start"] is None for r in table(rows, AGENTS.name))
    assert table(run(ProgressProjection(), [feed(rollout_stream_id(uuid4()), planned(uuid4()))]),
                 ROLLOUTS.name)[0]["notes"] == []


def test_the_progress_table_shows_the_rollouts_warnings_after_its_notes() -> None:
    feed, rollout_id = Feed(), uuid4()
    plan = _switch_over_plan(rollout_id).model_copy(update={"warnings": ("agent dma-1: SNMP both use UDP port 161",)})
    [row] = table(run(ProgressProjection(), [feed(rollout_stream_id(rollout_id), plan)]), ROLLOUTS.name)
    console = Console(file=io.StringIO(), width=200, color_system=None)

    console.print(progress_table(RolloutProgressOut.of(row, [])))

    assert isinstance(console.file, io.StringIO)
    lines = console.file.getvalue().splitlines()
    assert lines[-1] == "warning: agent dma-1: SNMP both use UDP port 161"
    assert lines[-2].startswith("note: ")


# -- scheduled starts: when, and how late ------------------------------------------------------------------------


def _rollout_row(rows: MemoryRows) -> Row:
    [row] = table(rows, ROLLOUTS.name)
    return row


def test_a_scheduled_start_recorded_twelve_seconds_late_shows_both_times_and_its_lateness() -> None:
    feed, rollout_id = Feed(), uuid4()
    start_at = T0 + timedelta(minutes=5)
    stream = rollout_stream_id(rollout_id)
    rows = run(ProgressProjection(), [feed(stream, planned(rollout_id, start_at=start_at))])
    waiting = _rollout_row(rows)
    assert (waiting["start_at"], waiting["started_at"], waiting["start_lateness_seconds"]) == (start_at, None, None)
    assert _start_line(waiting) == "scheduled for 2026-11-30T09:05:00Z"

    started_at = start_at + timedelta(seconds=12)
    run(ProgressProjection(), [feed(stream, RolloutStarted(scheduled_at=start_at, started_at=started_at))], rows)

    row = _rollout_row(rows)
    assert row["state"] == "Running"
    assert (row["start_at"], row["started_at"], row["start_lateness_seconds"]) == (start_at, started_at, 12.0)
    assert _start_line(row) == "scheduled 2026-11-30T09:05:00Z, started 2026-11-30T09:05:12Z (12 s late)"


@pytest.mark.parametrize(("offset", "lateness"), [(0.0, 0.0), (0.4, 0.4), (-2.0, 0.0)],
                         ids=["exactly", "within-tolerance", "early-by-another-clock"])
def test_a_start_on_time_is_not_late(offset: float, lateness: float) -> None:
    feed, rollout_id = Feed(), uuid4()
    start_at = T0 + timedelta(minutes=5)
    stream = rollout_stream_id(rollout_id)
    rows = run(ProgressProjection(), [
        feed(stream, planned(rollout_id, start_at=start_at)),
        feed(stream, RolloutStarted(scheduled_at=start_at, started_at=start_at + timedelta(seconds=offset))),
    ])
    row = _rollout_row(rows)
    assert row["start_lateness_seconds"] == lateness
    assert _start_line(row) == "scheduled 2026-11-30T09:05:00Z, started " + utc_text(row["started_at"]) + " (on time)"


def test_an_unscheduled_start_has_its_time_and_no_lateness() -> None:
    feed, rollout_id = Feed(), uuid4()
    stream = rollout_stream_id(rollout_id)
    started_at = T0 + timedelta(seconds=15)
    rows = run(ProgressProjection(), [feed(stream, planned(rollout_id)),
                                      feed(stream, RolloutStarted(started_at=started_at))])
    row = _rollout_row(rows)
    assert (row["start_at"], row["started_at"], row["start_lateness_seconds"]) == (None, started_at, None)
    assert _start_line(row) is None


def test_a_start_recorded_before_the_event_kept_its_times_is_timed_by_the_plan_and_the_record() -> None:
    feed, rollout_id = Feed(), uuid4()
    stream = rollout_stream_id(rollout_id)
    start_at = T0 + timedelta(seconds=20)
    rows = run(ProgressProjection(), [feed(stream, planned(rollout_id, start_at=start_at), seconds=10),
                                      feed(stream, RolloutStarted(), seconds=40)])  # recorded at T0 + 50 s
    row = _rollout_row(rows)
    assert (row["start_at"], row["started_at"], row["start_lateness_seconds"]) == (
        start_at, T0 + timedelta(seconds=50), 30.0)


def test_a_scheduled_rollout_cancelled_before_its_start_says_it_never_started() -> None:
    feed, rollout_id = Feed(), uuid4()
    stream = rollout_stream_id(rollout_id)
    rows = run(ProgressProjection(), [feed(stream, planned(rollout_id, start_at=T0 + timedelta(hours=1))),
                                      feed(stream, RolloutCancelled(reason="operator"))])
    row = _rollout_row(rows)
    assert (row["state"], row["started_at"], row["start_lateness_seconds"]) == ("Cancelled", None, None)
    assert _start_line(row) == "scheduled for 2026-11-30T10:00:00Z, never started"


def test_a_planned_start_is_scheduled_until_its_time_then_overdue() -> None:
    assert scheduled_start(T0, T0 - timedelta(hours=1)) == "scheduled for 2026-11-30T09:00:00Z"
    assert scheduled_start(T0, T0) == "scheduled for 2026-11-30T09:00:00Z"
    assert scheduled_start(T0, T0 + timedelta(seconds=11)) == (
        "overdue: scheduled 2026-11-30T09:00:00Z, 11 s ago; starts as soon as an engine runs")
    assert scheduled_start(T0, T0 + timedelta(seconds=2.5)).startswith("overdue: scheduled 2026-11-30T09:00:00Z, 2.5 s")


def test_the_rollout_records_the_times_it_is_given_on_its_start() -> None:
    rollout_id = uuid4()
    start_at = T0 + timedelta(minutes=5)
    rollout = Rollout.fold([planned(rollout_id, start_at=start_at)])

    [event] = rollout.start(scheduled_at=start_at, started_at=start_at + timedelta(seconds=11))

    assert event == RolloutStarted(scheduled_at=start_at, started_at=start_at + timedelta(seconds=11))
    assert isinstance(event, RolloutStarted) and event.lateness_seconds == 11.0
    assert rollout.start() == [RolloutStarted()]  # what the model checker and older callers record
