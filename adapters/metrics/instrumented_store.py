"""An event store that times every append and counts what was appended (and how late scheduled starts came);
reads pass straight through."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence

from prometheus_client import CollectorRegistry, Counter, Histogram

from dma_upgrade.adapters.metrics.rollout_starts import RolloutStartMetrics
from dma_upgrade.adapters.metrics.upgrade_metrics import UpgradeMetrics
from dma_upgrade.engine.errors import ConcurrencyConflict
from dma_upgrade.engine.events import NewEvent, RecordedEvent, StoredRecord
from dma_upgrade.engine.ports import AppendResult, Clock, EventStore

APPEND_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
"""Seconds: an append is a short transaction, slow when writers queue or the database struggles."""


class InstrumentedEventStore:
    """``EventStore`` around another: append latency by outcome, events by stream category, upgrade metrics, the
    lateness of scheduled starts (a late one is logged)."""

    def __init__(self, inner: EventStore, clock: Clock, registry: CollectorRegistry) -> None:
        self._inner = inner
        self._clock = clock
        self.upgrades = UpgradeMetrics(registry, inner.read_stream)
        self.starts = RolloutStartMetrics(registry)
        self.append_duration = Histogram(
            "dma_upgrade_event_store_append_duration_seconds",
            "Time one append to the event store took, by outcome (appended, duplicate, conflict, error).",
            ["outcome"], buckets=APPEND_BUCKETS, registry=registry)
        self.appended = Counter(
            "dma_upgrade_events_appended", "Events this process appended, by stream category.", ["category"],
            registry=registry)

    def append(self, stream_id: str, expected_version: int, events: Sequence[NewEvent]) -> AppendResult:
        at = self._clock.now()
        began = time.perf_counter()
        try:
            result = self._inner.append(stream_id, expected_version, events)
        except ConcurrencyConflict:
            self.append_duration.labels("conflict").observe(time.perf_counter() - began)
            raise
        except Exception:
            self.append_duration.labels("error").observe(time.perf_counter() - began)
            raise
        outcome = "duplicate" if result.duplicate else "appended"
        self.append_duration.labels(outcome).observe(time.perf_counter() - began)
        if not result.duplicate and result.positions:
            self.appended.labels(stream_id.split("-", 1)[0]).inc(len(result.positions))
            appended = [e.event for e in events]
            self.upgrades.observe(stream_id, expected_version, appended, at)
            self.starts.observe(stream_id, appended)
        return result

    def read_stream(self, stream_id: str, after_version: int = 0) -> list[RecordedEvent]:
        return self._inner.read_stream(stream_id, after_version)

    def read_all(self, after: int = 0, page_size: int = 1000) -> Iterator[RecordedEvent]:
        return self._inner.read_all(after, page_size)

    def read_records(self, after: int = 0, page_size: int = 1000) -> Iterator[StoredRecord]:
        return self._inner.read_records(after, page_size)

    def read_category(self, prefix: str) -> Iterator[RecordedEvent]:
        return self._inner.read_category(prefix)

    def head_position(self) -> int:
        return self._inner.head_position()
