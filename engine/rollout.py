"""A rollout as an aggregate: the plan plus the operator's controls, folded from its stream."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from functools import cache

from transitions import Machine

from dma_upgrade.engine.aggregate import Aggregate
from dma_upgrade.engine.errors import InvalidTransition
from dma_upgrade.engine.events import Event
from dma_upgrade.engine.rollout_events import (
    FailedAgentsRetried,
    RolloutCancelled,
    RolloutCompleted,
    RolloutContinued,
    RolloutFailed,
    RolloutPaused,
    RolloutPlanned,
    RolloutResumed,
    RolloutStarted,
)
from dma_upgrade.engine.state_table import destination


class RolloutState(StrEnum):
    """Where a rollout stands."""

    PLANNED = "Planned"
    RUNNING = "Running"
    PAUSED = "Paused"
    COMPLETED = "Completed"
    FAILED = "Failed"
    CANCELLED = "Cancelled"


ACTIVE_STATES = (RolloutState.PLANNED, RolloutState.RUNNING, RolloutState.PAUSED)
"""The states in which an engine drives a rollout (or waits for its start)."""
ENDED_STATES = frozenset(state for state in RolloutState if state not in ACTIVE_STATES)
"""The states in which the engine stops driving a rollout (until a retry or a continue)."""


R = RolloutState
ROLLOUT_TRANSITIONS: list[dict[str, object]] = [
    {"trigger": "start", "source": R.PLANNED.value, "dest": R.RUNNING.value},
    {"trigger": "pause", "source": R.RUNNING.value, "dest": R.PAUSED.value},
    {"trigger": "resume", "source": R.PAUSED.value, "dest": R.RUNNING.value},
    {"trigger": "cancel", "source": [R.PLANNED.value, R.RUNNING.value, R.PAUSED.value, R.FAILED.value],
     "dest": R.CANCELLED.value},
    {"trigger": "complete", "source": R.RUNNING.value, "dest": R.COMPLETED.value},
    {"trigger": "fail", "source": R.RUNNING.value, "dest": R.FAILED.value},
    {"trigger": "retry_failed", "source": R.FAILED.value, "dest": R.RUNNING.value},
    {"trigger": "continue", "source": [R.FAILED.value, R.CANCELLED.value], "dest": R.RUNNING.value},
]
"""A failed rollout keeps its clusters until it is retried to completion or cancelled. A failed or cancelled
rollout may be continued with its package: the agents that did not complete run again."""

_EVENT_TRIGGERS: dict[type[Event], str] = {
    RolloutStarted: "start", RolloutPaused: "pause", RolloutResumed: "resume", RolloutCancelled: "cancel",
    RolloutCompleted: "complete", RolloutFailed: "fail", FailedAgentsRetried: "retry_failed",
    RolloutContinued: "continue",
}


def _only_destination(trigger: str) -> RolloutState:
    (dest,) = {str(t["dest"]) for t in ROLLOUT_TRANSITIONS if t["trigger"] == trigger}
    return RolloutState(dest)


STATE_AFTER: dict[type[Event], RolloutState] = {
    event: _only_destination(trigger) for event, trigger in _EVENT_TRIGGERS.items()
}
"""The state each event of a rollout's stream (but its ``RolloutPlanned``, which leaves it ``PLANNED``) leads to:
each trigger of the table has one destination, whatever state it leaves. What read models show as a rollout's
state."""


class _Model:
    state: str


_MACHINE = Machine(model=None, states=[s.value for s in RolloutState], transitions=ROLLOUT_TRANSITIONS,
                   initial=R.PLANNED.value, auto_transitions=False)


@cache
def rollout_next_state(state: RolloutState, trigger: str) -> RolloutState | None:
    """The state ``trigger`` leads to from ``state``, or None when the table does not allow it."""
    dest = destination(_MACHINE, _Model(), state.value, trigger)
    return RolloutState(dest) if dest is not None else None


class Rollout(Aggregate):
    """The state of one rollout, rebuilt from its events; decisions never mutate it."""

    def __init__(self) -> None:
        self.version = 0
        self.state = RolloutState.PLANNED
        self.planned: RolloutPlanned | None = None
        self.retry_requests: dict[str, int] = {}
        self.end_reason: str | None = None

    @property
    def plan(self) -> RolloutPlanned:
        if self.planned is None:
            raise InvalidTransition("none", "use a rollout", "it was never planned")
        return self.planned

    def start(self, *, scheduled_at: datetime | None = None, started_at: datetime | None = None) -> list[Event]:
        """Start the rollout: ``scheduled_at`` is when its plan said to (its ``start_at``), ``started_at`` the
        engine's clock now (both recorded on the event, so a late start is known from the log)."""
        return self._decide("start", RolloutStarted(scheduled_at=scheduled_at, started_at=started_at))

    def pause(self) -> list[Event]:
        return self._decide("pause", RolloutPaused())

    def resume(self) -> list[Event]:
        return self._decide("resume", RolloutResumed())

    def cancel(self, reason: str) -> list[Event]:
        return self._decide("cancel", RolloutCancelled(reason=reason))

    def complete(self, completed: int, cancelled: int) -> list[Event]:
        return self._decide("complete", RolloutCompleted(completed=completed, cancelled=cancelled))

    def fail(self, reason: str) -> list[Event]:
        return self._decide("fail", RolloutFailed(reason=reason))

    def retry_failed(self, agents: tuple[str, ...]) -> list[Event]:
        return self._decide("retry_failed", FailedAgentsRetried(agents=agents))

    def continue_rollout(self, agents: tuple[str, ...]) -> list[Event]:
        """Run again the agents that did not complete; ``agents`` are those whose upgrade failed or was cancelled."""
        return self._decide("continue", RolloutContinued(agents=agents))

    def _decide(self, trigger: str, event: Event) -> list[Event]:
        if self.planned is None:
            raise InvalidTransition("none", trigger.replace("_", " "), "the rollout was never planned")
        if rollout_next_state(self.state, trigger) is None:
            raise InvalidTransition(self.state, trigger.replace("_", " ") + " the rollout")
        return [event]

    def apply(self, event: Event) -> None:
        """Apply one event of this rollout's stream."""
        self.version += 1
        if isinstance(event, RolloutPlanned):
            self.planned = event
            return
        trigger = _EVENT_TRIGGERS.get(type(event))
        dest = rollout_next_state(self.state, trigger) if trigger else None
        if dest is None:
            raise InvalidTransition(self.state, f"apply {type(event).__name__}", "not allowed by the table")
        self.state = dest
        if isinstance(event, FailedAgentsRetried | RolloutContinued):
            for agent in event.agents:
                self.retry_requests[agent] = self.retry_requests.get(agent, 0) + 1
        if isinstance(event, RolloutContinued):
            self.end_reason = None
        if isinstance(event, RolloutFailed | RolloutCancelled):
            self.end_reason = event.reason
