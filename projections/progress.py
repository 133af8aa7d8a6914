"""The Progress tab: per rollout and per agent, the state, step, phase, times, durations and errors."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from dma_upgrade.engine.agent_upgrade import (
    ENTERED_ON_START,
    ENTERED_ON_SUCCESS,
    TRIGGER_STATES,
    UPGRADE_STREAMS,
    upgrade_id_of_stream,
)
from dma_upgrade.engine.events import Event
from dma_upgrade.engine.rollout import STATE_AFTER, RolloutState
from dma_upgrade.engine.rollout_events import (
    FailedAgentsRetried,
    RolloutCancelled,
    RolloutCompleted,
    RolloutContinued,
    RolloutFailed,
    RolloutPlanned,
    RolloutResumed,
    RolloutStarted,
    rollout_id_of_stream,
    start_lateness_seconds,
)
from dma_upgrade.engine.upgrade_events import (
    UPGRADE_EVENTS,
    AgentUpgradeCancelled,
    AgentUpgradeCompleted,
    AgentUpgradeFailed,
    AgentUpgradeResumed,
    AgentUpgradeRetried,
    InstallPhaseReported,
    ManualStartAwaited,
    Step,
    StepDelayed,
    StepDoubtResolved,
    StepFailed,
    StepInDoubt,
    StepStarted,
    StepStatusLearned,
    StepSucceeded,
)
from dma_upgrade.engine.upgrade_machine import UpgradeState
from dma_upgrade.projections.base import Recorded
from dma_upgrade.projections.tables import ColumnType as C
from dma_upgrade.projections.tables import Row, RowAccess, TableSpec

ROLLOUTS = TableSpec("progress_rollouts", ("rollout_id",), (
    ("rollout_id", C.TEXT), ("package_version", C.TEXT), ("failover_policy", C.TEXT), ("state", C.TEXT),
    ("upload_only", C.BOOL), ("agents_total", C.INT), ("waiting", C.INT), ("in_flight", C.INT),
    ("completed", C.INT), ("failed", C.INT), ("cancelled", C.INT), ("warnings", C.JSON),
    ("planned_at", C.TIMESTAMP), ("started_at", C.TIMESTAMP), ("ended_at", C.TIMESTAMP), ("end_reason", C.TEXT),
    ("planned_by", C.TEXT), ("last_position", C.INT), ("upgrade_ids", C.JSON), ("notes", C.JSON),
    ("start_at", C.TIMESTAMP), ("start_lateness_seconds", C.FLOAT),
))
"""A rollout row's ``start_at`` is its plan's scheduled start (None: it starts as soon as planned); ``started_at``
when the engine recorded the start (the event's time for starts recorded before the event kept it); and
``start_lateness_seconds`` how long after ``start_at`` that was (0 when on time; None when not scheduled or not
yet started)."""
AGENTS = TableSpec("progress_agents", ("upgrade_id",), (
    ("upgrade_id", C.TEXT), ("rollout_id", C.TEXT), ("agent", C.TEXT), ("plan_order", C.INT),
    ("failover_role", C.TEXT), ("state", C.TEXT), ("step", C.TEXT), ("phase", C.TEXT),
    ("steps_done", C.INT), ("steps_planned", C.INT), ("attempts", C.INT), ("retries", C.INT),
    ("started_at", C.TIMESTAMP), ("ended_at", C.TIMESTAMP), ("state_since", C.TIMESTAMP),
    ("durations", C.JSON), ("last_error", C.TEXT), ("manual_start_needed", C.BOOL), ("version_from", C.TEXT),
    ("version_after", C.TEXT), ("waiting_until", C.TIMESTAMP), ("last_position", C.INT), ("resumes", C.INT),
    ("step_attempt", C.INT), ("in_doubt", C.BOOL), ("awaiting_manual_start", C.TEXT), ("notes", C.JSON),
))
"""An agent row's ``in_doubt`` says the outcome of the step in flight (``step``, ``step_attempt``) is unknown, and
``last_error`` then says why; ``awaiting_manual_start`` names the agent its switch-over waits for an operator to
start; ``notes`` are its plan's notes (what its failover pair goes through), as ``notes`` of a rollout row are
the plan's."""

_UPGRADE_EVENT_TYPES = frozenset(UPGRADE_EVENTS)


_ENDED_BUCKETS: dict[str, str] = {
    UpgradeState.COMPLETED: "completed", UpgradeState.FAILED: "failed", UpgradeState.CANCELLED: "cancelled",
}


def bucket(row: Row) -> str:
    """Which of a rollout's totals an agent row counts in."""
    return _ENDED_BUCKETS.get(row["state"]) or ("in_flight" if row["attempts"] else "waiting")


class ProgressProjection:
    """Rollouts and agent upgrades as the Progress tab shows them."""

    name = "progress"
    tables: tuple[TableSpec, ...] = (ROLLOUTS, AGENTS)
    event_types: frozenset[type[Event]] = frozenset({RolloutPlanned, *STATE_AFTER, *UPGRADE_EVENTS})

    def handle(self, recorded: Recorded, rows: RowAccess) -> None:
        event = recorded.event
        if type(event) in _UPGRADE_EVENT_TYPES:  # first: nearly every event is one
            if recorded.stream_id.startswith(UPGRADE_STREAMS):
                self._upgrade_event(event, recorded, rows)
        elif isinstance(event, RolloutPlanned):
            self._planned(event, recorded, rows)
        elif type(event) in STATE_AFTER:
            self._rollout_moved(event, recorded, rows)

    def _planned(self, event: RolloutPlanned, recorded: Recorded, rows: RowAccess) -> None:
        rows.put(ROLLOUTS.name, {
            "rollout_id": str(event.rollout_id), "package_version": event.package_version,
            "failover_policy": event.failover_policy.value, "state": RolloutState.PLANNED.value,
            "upload_only": event.upload_only, "agents_total": len(event.agents), "waiting": len(event.agents),
            "in_flight": 0, "completed": 0, "failed": 0, "cancelled": 0, "warnings": list(event.warnings),
            "planned_at": recorded.recorded_at, "started_at": None, "ended_at": None, "end_reason": None,
            "planned_by": recorded.actor,
            "last_position": recorded.position, "upgrade_ids": [str(a.upgrade_id) for a in event.agents],
            "notes": list(event.notes), "start_at": event.start_at, "start_lateness_seconds": None,
        })
        for order, agent in enumerate(event.agents):
            rows.put(AGENTS.name, {
                "upgrade_id": str(agent.upgrade_id), "rollout_id": str(event.rollout_id), "agent": agent.name,
                "plan_order": order, "failover_role": agent.failover_role.value if agent.failover_role else None,
                "state": UpgradeState.SCHEDULED.value, "step": None, "phase": None, "steps_done": 0,
                "steps_planned": len(agent.plan.steps), "attempts": 0, "retries": 0, "started_at": None,
                "ended_at": None, "state_since": recorded.recorded_at, "durations": {}, "last_error": None,
                "manual_start_needed": False, "version_from": agent.current_version, "version_after": None,
                "waiting_until": None, "last_position": recorded.position, "resumes": 0, "step_attempt": None,
                "in_doubt": False, "awaiting_manual_start": None, "notes": list(agent.notes),
            })

    def _rollout_moved(self, event: Event, recorded: Recorded, rows: RowAccess) -> None:
        row = rows.get(ROLLOUTS.name, (rollout_id_of_stream(recorded.stream_id),))
        if row is None:
            return
        row["state"] = STATE_AFTER[type(event)].value
        if isinstance(event, RolloutStarted) and row["started_at"] is None:
            _started(row, event, recorded.recorded_at)
        if isinstance(event, RolloutCompleted | RolloutCancelled | RolloutFailed):
            row["ended_at"] = recorded.recorded_at
            row["end_reason"] = getattr(event, "reason", None)
        if isinstance(event, FailedAgentsRetried | RolloutResumed | RolloutContinued):
            row["ended_at"] = None
            row["end_reason"] = None
        row["last_position"] = recorded.position
        rows.put(ROLLOUTS.name, row)
        if isinstance(event, RolloutCancelled):
            self._cancel_unstarted(row["upgrade_ids"] or [], recorded, rows)
        if isinstance(event, RolloutContinued):
            self._uncancel_unscheduled(row["upgrade_ids"] or [], set(event.agents), recorded, rows)

    def _cancel_unstarted(self, upgrade_ids: list[str], recorded: Recorded, rows: RowAccess) -> None:
        """A cancelled rollout never starts the agents it had not begun: they show as Cancelled."""
        for upgrade_id in upgrade_ids:
            row = rows.get(AGENTS.name, (upgrade_id,))
            if row is None or row["state"] != UpgradeState.SCHEDULED.value or row["attempts"]:
                continue
            _spend(row, recorded.recorded_at)
            row["state"] = UpgradeState.CANCELLED.value
            row["ended_at"] = recorded.recorded_at
            row["last_position"] = recorded.position
            rows.put(AGENTS.name, row)
            self._recount(row["rollout_id"], "waiting", "cancelled", recorded.position, rows)

    def _uncancel_unscheduled(self, upgrade_ids: list[str], retried: set[str], recorded: Recorded,
                              rows: RowAccess) -> None:
        """A continued rollout schedules the agents its cancel caught before they were scheduled: they wait again
        (the others it takes up show their retry)."""
        for upgrade_id in upgrade_ids:
            row = rows.get(AGENTS.name, (upgrade_id,))
            if row is None or row["state"] != UpgradeState.CANCELLED.value or row["agent"] in retried:
                continue
            _spend(row, recorded.recorded_at)
            row["state"] = UpgradeState.SCHEDULED.value
            row["ended_at"] = None
            row["last_position"] = recorded.position
            rows.put(AGENTS.name, row)
            self._recount(row["rollout_id"], "cancelled", "waiting", recorded.position, rows)

    def _upgrade_event(self, event: Event, recorded: Recorded, rows: RowAccess) -> None:
        row = rows.get(AGENTS.name, (upgrade_id_of_stream(recorded.stream_id),))
        if row is None:
            return
        before = bucket(row)
        enter = _ENTERS.get(type(event))
        state = enter(event) if enter is not None else None
        when = recorded.recorded_at
        if state is not None and state != row["state"]:
            _spend(row, when)
            row["state"] = state
        update = _UPGRADE_UPDATES.get(type(event))
        if update is not None:
            update(row, event, when)
        row["last_position"] = recorded.position
        rows.put(AGENTS.name, row)
        after = bucket(row)
        if after != before:
            self._recount(row["rollout_id"], before, after, recorded.position, rows)

    def _recount(self, rollout_id: str, before: str, after: str, position: int, rows: RowAccess) -> None:
        rollout = rows.get(ROLLOUTS.name, (rollout_id,))
        if rollout is None:
            return
        rollout[before] -= 1
        rollout[after] += 1
        rollout["last_position"] = position
        rows.put(ROLLOUTS.name, rollout)


def _started(row: Row, event: RolloutStarted, recorded_at: datetime) -> None:
    """The start's times: as the event says, else (recorded before it kept them) the plan's and the record's."""
    row["start_at"] = event.scheduled_at or row["start_at"]
    row["started_at"] = event.started_at or recorded_at
    row["start_lateness_seconds"] = start_lateness_seconds(row["start_at"], row["started_at"])


def state_entered(event: Event) -> str | None:
    """The upgrade state an event of an upgrade stream moves it into (None when it stays where it is)."""
    enter = _ENTERS.get(type(event))
    return enter(event) if enter is not None else None


_ENTERS: dict[type[Event], Callable[[Any], str | None]] = {
    StepStarted: lambda e: TRIGGER_STATES[ENTERED_ON_START[e.step]].value if e.step in ENTERED_ON_START else None,
    StepSucceeded: lambda e: _entered_on_success(e.step),
    StepDoubtResolved: lambda e: _entered_on_success(e.step) if e.applied else None,
    AgentUpgradeCompleted: lambda _: UpgradeState.COMPLETED.value,
    AgentUpgradeFailed: lambda _: UpgradeState.FAILED.value,
    AgentUpgradeRetried: lambda e: e.resume_state,
    AgentUpgradeCancelled: lambda _: UpgradeState.CANCELLED.value,
}
"""Per event type, the state it moves an upgrade into (a lookup by type: this runs for nearly every event)."""


def _entered_on_success(step: Step) -> str | None:
    return TRIGGER_STATES[ENTERED_ON_SUCCESS[step]].value if step in ENTERED_ON_SUCCESS else None


def _step_started(row: Row, event: StepStarted, when: datetime) -> None:
    row["step"] = event.step.value
    row["step_attempt"] = event.attempt
    row["attempts"] += 1
    row["waiting_until"] = None
    row["started_at"] = row["started_at"] or when
    row["in_doubt"] = False
    row["awaiting_manual_start"] = None


def _step_succeeded(row: Row, event: StepSucceeded | StepDoubtResolved, _: datetime) -> None:
    row["steps_done"] += 1
    row["step"] = None
    row["phase"] = None
    row["in_doubt"] = False
    row["version_after"] = event.version_after or row["version_after"]


def _step_failed(row: Row, event: StepFailed, _: datetime) -> None:
    row["step"] = None
    row["phase"] = None
    row["in_doubt"] = False
    row["last_error"] = event.error


def _step_in_doubt(row: Row, event: StepInDoubt, _: datetime) -> None:
    row["in_doubt"] = True
    row["last_error"] = event.reason


def _doubt_cleared(row: Row, _: StepStatusLearned, __: datetime) -> None:
    row["in_doubt"] = False


def _doubt_resolved(row: Row, event: StepDoubtResolved, when: datetime) -> None:
    if event.applied:
        _step_succeeded(row, event, when)
    else:
        row["in_doubt"] = False


def _manual_start_awaited(row: Row, event: ManualStartAwaited, _: datetime) -> None:
    row["awaiting_manual_start"] = event.agent


def _step_delayed(row: Row, event: StepDelayed, _: datetime) -> None:
    row["waiting_until"] = event.due_at


def _phase_reported(row: Row, event: InstallPhaseReported, _: datetime) -> None:
    row["phase"] = event.phase


def _completed(row: Row, event: AgentUpgradeCompleted, when: datetime) -> None:
    row["manual_start_needed"] = event.manual_start_needed
    row["ended_at"] = when
    _ended(row)


def _failed(row: Row, event: AgentUpgradeFailed, when: datetime) -> None:
    row["last_error"] = event.reason
    row["ended_at"] = when
    row["phase"] = None
    _ended(row)


def _ended(row: Row) -> None:
    row["step"] = None
    row["in_doubt"] = False
    row["awaiting_manual_start"] = None


def _resumed(row: Row, _: AgentUpgradeResumed, __: datetime) -> None:
    row["resumes"] += 1


def _retried(row: Row, _: AgentUpgradeRetried, __: datetime) -> None:
    row["retries"] += 1
    row["ended_at"] = None


def _cancelled(row: Row, _: AgentUpgradeCancelled, when: datetime) -> None:
    row["ended_at"] = when
    _ended(row)


_UPGRADE_UPDATES: dict[type[Event], Callable[[Row, Any, datetime], None]] = {
    StepStarted: _step_started, StepSucceeded: _step_succeeded, StepFailed: _step_failed,
    StepDelayed: _step_delayed, InstallPhaseReported: _phase_reported, AgentUpgradeCompleted: _completed,
    AgentUpgradeFailed: _failed, AgentUpgradeResumed: _resumed, AgentUpgradeRetried: _retried,
    AgentUpgradeCancelled: _cancelled, StepInDoubt: _step_in_doubt, StepStatusLearned: _doubt_cleared,
    StepDoubtResolved: _doubt_resolved, ManualStartAwaited: _manual_start_awaited,
}
"""Per upgrade event type, what it changes in the agent's row besides its state (the time is the event's)."""


def _spend(row: Row, until: datetime) -> None:
    """Add the time spent in the current state to its total."""
    since = row["state_since"]
    durations = dict(row["durations"] or {})
    if since is not None:
        durations[row["state"]] = round(durations.get(row["state"], 0.0) + (until - since).total_seconds(), 6)
    row["durations"] = durations
    row["state_since"] = until

