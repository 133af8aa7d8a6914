"""Scheduled starts as this process records them: how late each came (a histogram).

A scheduled start fires late when no engine ran at its time (all stopped, killed, or the database out) or the
engine was too busy: the start then happens as soon as an engine looks, and ``RolloutStarted`` records both
times. They are observed here, after the append succeeded, so each start is observed once, whichever way it
came about (the alarm firing, or an engine taking up a start that came due while none ran). The runner that
records a late start logs it (``adapters/runtime/rollout_runner.py``).
"""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Histogram

from dma_upgrade.engine.events import Event
from dma_upgrade.engine.rollout_events import ROLLOUT_STREAMS, RolloutStarted

LATENESS_BUCKETS = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 14400.0, 86400.0)
"""Seconds: on time is well under a second; an engine down at the time makes it minutes to days."""


class RolloutStartMetrics:
    """The lateness of every scheduled start this process appends."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.lateness = Histogram(
            "dma_upgrade_rollout_start_lateness_seconds",
            "How long after its scheduled time (start_at) a scheduled rollout was started (0 when on time).",
            buckets=LATENESS_BUCKETS, registry=registry)

    def observe(self, stream_id: str, events: Sequence[Event]) -> None:
        """Observe the scheduled starts among ``events`` just appended to ``stream_id``."""
        if not stream_id.startswith(ROLLOUT_STREAMS):
            return
        for event in events:
            if not isinstance(event, RolloutStarted):
                continue
            late = event.lateness_seconds
            if late is None:
                continue
            self.lateness.observe(late)
