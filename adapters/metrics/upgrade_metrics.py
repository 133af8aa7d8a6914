"""Counters and histograms fed by the events this process appends: transitions, failures and durations.

They count per process (a restarted process starts again from zero, which ``rate()`` handles). A
transition is counted when an upgrade enters a state other than the one it was in. A step's duration
runs from its ``StepStarted`` to its outcome; an upgrade's from its first ``StepStarted`` to
``AgentUpgradeCompleted``. What this process did not see (appended before a restart, or an upgrade it
did not follow from before its first step) is read from the upgrade's stream; only unfinished upgrades are
remembered.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Histogram

from dma_upgrade.engine.agent_upgrade import UPGRADE_STREAMS
from dma_upgrade.engine.events import Event, RecordedEvent
from dma_upgrade.engine.upgrade_events import (
    AgentUpgradeCancelled,
    AgentUpgradeCompleted,
    AgentUpgradeFailed,
    AgentUpgradeScheduled,
    Step,
    StepFailed,
    StepStarted,
    StepSucceeded,
)
from dma_upgrade.engine.upgrade_machine import STOPPED_STATES, UpgradeState
from dma_upgrade.projections.progress import state_entered

STEP_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0)
"""Seconds: a step takes from a second (stop SNMP) to most of an hour (a big install)."""
UPGRADE_BUCKETS = (60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0)
"""Seconds: an agent's upgrade takes minutes to hours."""

StreamReader = Callable[[str], list[RecordedEvent]]


class UpgradeMetrics:
    """What the engine did to agent upgrades, as counted from the events it appended."""

    def __init__(self, registry: CollectorRegistry, read_stream: StreamReader) -> None:
        self._read_stream = read_stream
        self._lock = threading.Lock()
        self._step_started: dict[str, tuple[Step, datetime]] = {}
        self._first_started: dict[str, datetime] = {}
        """When the upgrades this process saw begin their first step did so."""
        self._followed: dict[str, tuple[str | None, Step | None, int]] = {}
        """Each followed upgrade's state and last attempted step, and its stream's version after this process's last
        append: trusted only by an append that follows on at that version (another process may have appended)."""
        self.transitions = Counter(
            "dma_upgrade_agent_upgrade_transitions", "Agent upgrades that entered each state.",
            ["state"], registry=registry)
        self.step_attempts = Counter(
            "dma_upgrade_step_attempts", "Attempts of each step started on an agent.", ["step"], registry=registry)
        self.step_failures = Counter(
            "dma_upgrade_step_failures", "Attempts of each step that failed.", ["step"], registry=registry)
        self.upgrade_failures = Counter(
            "dma_upgrade_agent_upgrade_failures", "Agent upgrades that ended failed, by the last step they "
            "attempted (none: before any step).", ["step"], registry=registry)
        self.step_duration = Histogram(
            "dma_upgrade_step_duration_seconds", "How long one attempt of a step took, by step and outcome.",
            ["step", "outcome"], buckets=STEP_BUCKETS, registry=registry)
        self.upgrade_duration = Histogram(
            "dma_upgrade_agent_upgrade_duration_seconds",
            "Time from an agent upgrade's first step to its completion.", buckets=UPGRADE_BUCKETS, registry=registry)

    def observe(self, stream_id: str, expected_version: int, events: Sequence[Event], at: datetime) -> None:
        """Count the events just appended at ``at`` to ``stream_id``, which held ``expected_version`` events."""
        if not stream_id.startswith(UPGRADE_STREAMS):
            return
        state, last_step = self._before(stream_id, expected_version)
        for event in events:
            entered = _entered(event)
            if entered is not None and entered != state:
                self.transitions.labels(entered).inc()
                state = entered
            if isinstance(event, AgentUpgradeFailed):
                failed_on = event.step or last_step
                self.upgrade_failures.labels(failed_on.value if failed_on else "none").inc()
            if isinstance(event, StepStarted):
                if last_step is None:  # its first step: no step was attempted before
                    with self._lock:
                        self._first_started[stream_id] = at
                last_step = event.step
            self._count(stream_id, event, at)
        with self._lock:
            if state is None or state in _STOPPED:
                self._followed.pop(stream_id, None)
            else:
                self._followed[stream_id] = (state, last_step, expected_version + len(events))

    def _before(self, stream_id: str, expected_version: int) -> tuple[str | None, Step | None]:
        """The upgrade's state and last attempted step before this append: as followed, if this process appended
        last; else from its stream."""
        with self._lock:
            known = self._followed.get(stream_id)
        if known is not None and known[2] == expected_version:
            return known[0], known[1]
        if expected_version == 0:
            return None, None
        state, last_step = None, None
        for recorded in self._read_stream(stream_id):
            if recorded.stream_version > expected_version:
                break
            state = _entered(recorded.event) or state
            last_step = recorded.event.step if isinstance(recorded.event, StepStarted) else last_step
        return state, last_step

    def _count(self, stream_id: str, event: Event, at: datetime) -> None:
        match event:
            case StepStarted(step=step):
                self.step_attempts.labels(step.value).inc()
                with self._lock:
                    self._step_started[stream_id] = (step, at)
            case StepSucceeded(step=step):
                self._step_ended(stream_id, step, "succeeded", at)
            case StepFailed(step=step):
                self.step_failures.labels(step.value).inc()
                self._step_ended(stream_id, step, "failed", at)
            case AgentUpgradeCompleted():
                with self._lock:
                    first = self._first_started.get(stream_id)
                self._forget(stream_id)
                first = first or self._first_start(stream_id)
                if first is not None:
                    self.upgrade_duration.observe(max((at - first).total_seconds(), 0.0))
            case AgentUpgradeFailed() | AgentUpgradeCancelled():
                self._forget(stream_id)

    def _step_ended(self, stream_id: str, step: Step, outcome: str, at: datetime) -> None:
        with self._lock:
            seen = self._step_started.pop(stream_id, None)
        started = seen[1] if seen is not None and seen[0] is step else self._last_start(stream_id, step)
        if started is not None:
            self.step_duration.labels(step.value, outcome).observe(max((at - started).total_seconds(), 0.0))

    def _forget(self, stream_id: str) -> None:
        with self._lock:
            self._step_started.pop(stream_id, None)
            self._first_started.pop(stream_id, None)

    def _last_start(self, stream_id: str, step: Step) -> datetime | None:
        starts = [r.recorded_at for r in self._read_stream(stream_id)
                  if isinstance(r.event, StepStarted) and r.event.step is step]
        return starts[-1] if starts else None

    def _first_start(self, stream_id: str) -> datetime | None:
        return next((r.recorded_at for r in self._read_stream(stream_id) if isinstance(r.event, StepStarted)), None)


_STOPPED = frozenset(s.value for s in STOPPED_STATES)


def _entered(event: Event) -> str | None:
    """The state an upgrade event moves its upgrade into, creation (Scheduled) included."""
    return UpgradeState.SCHEDULED.value if isinstance(event, AgentUpgradeScheduled) else state_entered(event)
