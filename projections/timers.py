"""The armed timers: scheduled rollout starts and agent steps waiting (Delayed Start, retry backoff).

A timer is armed by an event and disarmed by a later one of the same stream. Each stream has at most
one pending timer; ``pending_timer_streams`` remembers which, so a disarming event finds it by key.
"""

from __future__ import annotations

from datetime import datetime

from dma_upgrade.engine.agent_upgrade import UPGRADE_STREAMS
from dma_upgrade.engine.events import Event
from dma_upgrade.engine.rollout_events import (
    ROLLOUT_STREAMS,
    RolloutCancelled,
    RolloutCompleted,
    RolloutFailed,
    RolloutPlanned,
    RolloutStarted,
    rollout_stream_id,
)
from dma_upgrade.engine.upgrade_events import (
    AgentUpgradeCancelled,
    AgentUpgradeCompleted,
    AgentUpgradeFailed,
    StepDelayed,
    StepStarted,
)
from dma_upgrade.projections.base import Recorded
from dma_upgrade.projections.tables import ColumnType as C
from dma_upgrade.projections.tables import RowAccess, TableSpec

TIMERS = TableSpec("pending_timers", ("timer_id",), (
    ("timer_id", C.TEXT), ("kind", C.TEXT), ("due_at", C.TIMESTAMP), ("stream_id", C.TEXT), ("step", C.TEXT),
    ("armed_at", C.TIMESTAMP),
))
TIMER_STREAMS = TableSpec("pending_timer_streams", ("stream_id",), (
    ("stream_id", C.TEXT), ("timer_id", C.TEXT),
))

SCHEDULED_START = "scheduled-start"
_DELAY_KINDS = {"delayed start": "delayed-start", "retry backoff": "retry-backoff"}
TIMER_KINDS = (SCHEDULED_START, *_DELAY_KINDS.values())
"""Every kind of timer the engine arms."""

_ROLLOUT_DISARMS = (RolloutStarted, RolloutCancelled, RolloutCompleted, RolloutFailed)
_UPGRADE_DISARMS = (StepStarted, AgentUpgradeFailed, AgentUpgradeCancelled, AgentUpgradeCompleted)


def delay_kind(reason: str) -> str:
    """The timer kind of a ``StepDelayed`` reason (an unknown reason is kept, spaces as hyphens)."""
    return _DELAY_KINDS.get(reason, reason.strip().replace(" ", "-"))


class PendingTimersProjection:
    """Every timer armed and not yet disarmed, with when it is due."""

    name = "pending_timers"
    tables: tuple[TableSpec, ...] = (TIMERS, TIMER_STREAMS)
    event_types: frozenset[type[Event]] = frozenset({RolloutPlanned, *_ROLLOUT_DISARMS, StepDelayed,
                                                     *_UPGRADE_DISARMS})

    def handle(self, recorded: Recorded, rows: RowAccess) -> None:
        event = recorded.event
        stream_id = recorded.stream_id
        if isinstance(event, RolloutPlanned):
            if event.start_at is not None:
                stream_id = rollout_stream_id(event.rollout_id)
                _arm(rows, stream_id, f"{stream_id}:start", SCHEDULED_START, event.start_at, None,
                     recorded.recorded_at)
        elif isinstance(event, _ROLLOUT_DISARMS) and stream_id.startswith(ROLLOUT_STREAMS):
            _disarm(rows, stream_id)
        elif not stream_id.startswith(UPGRADE_STREAMS):
            return
        elif isinstance(event, StepDelayed):
            _arm(rows, stream_id, f"{stream_id}:{event.step.value}", delay_kind(event.reason), event.due_at,
                 event.step.value, recorded.recorded_at)
        elif isinstance(event, _UPGRADE_DISARMS):
            _disarm(rows, stream_id)


def _arm(rows: RowAccess, stream_id: str, timer_id: str, kind: str, due_at: datetime, step: str | None,
         armed_at: datetime) -> None:
    """Arm a timer, replacing any timer the stream had pending."""
    _disarm(rows, stream_id)
    rows.put(TIMERS.name, {
        "timer_id": timer_id, "kind": kind, "due_at": due_at, "stream_id": stream_id, "step": step,
        "armed_at": armed_at,
    })
    rows.put(TIMER_STREAMS.name, {"stream_id": stream_id, "timer_id": timer_id})


def _disarm(rows: RowAccess, stream_id: str) -> None:
    """Remove the stream's pending timer, if any."""
    index = rows.get(TIMER_STREAMS.name, (stream_id,))
    if index is None:
        return
    rows.delete(TIMERS.name, (index["timer_id"],))
    rows.delete(TIMER_STREAMS.name, (stream_id,))
