"""The upgrade-duration metric (``UpgradeMetrics``) runs from an upgrade's first ``StepStarted`` to its completion.
Invariants: an upgrade this process followed from before its first step is timed from what it saw, without reading
the upgrade's stream; one it began following later (a restart, an upgrade handed over, a retry after a failure) is
timed from the first start stored on its stream, as is one another process appended to since this one did."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

from prometheus_client import CollectorRegistry

from dma_upgrade.adapters.metrics.upgrade_metrics import UpgradeMetrics
from dma_upgrade.engine.events import Event, EventMetadata, RecordedEvent
from dma_upgrade.engine.upgrade_events import (
    AgentUpgradeCompleted,
    AgentUpgradeFailed,
    AgentUpgradePlan,
    AgentUpgradeRetried,
    AgentUpgradeScheduled,
    Step,
    StepStarted,
    StepSucceeded,
)

T0 = datetime(2026, 12, 5, 9, tzinfo=UTC)
STREAM = f"upgrade-{uuid4()}"
SCHEDULED = AgentUpgradeScheduled(upgrade_id=uuid4(), agent="dma-1", package_sha256="0" * 64,
                                  target_version="10.4.9.0-14794", plan=AgentUpgradePlan())


def _started(step: Step) -> StepStarted:
    return StepStarted(step=step, attempt=1, idempotency_key=f"k:{step.value}")


class Stream:
    """An upgrade's stored stream, and how often the metrics read it."""

    def __init__(self) -> None:
        self.events: list[RecordedEvent] = []
        self.reads = 0

    def store(self, events: list[Event], at: datetime) -> None:
        for event in events:
            self.events.append(RecordedEvent(position=len(self.events) + 1, event_id=uuid4(), stream_id=STREAM,
                                             stream_version=len(self.events) + 1, event=event,
                                             metadata=EventMetadata(actor="engine"), recorded_at=at))

    def read(self, stream_id: str) -> list[RecordedEvent]:
        assert stream_id == STREAM
        self.reads += 1
        return list(self.events)


def _duration_sum(registry: CollectorRegistry) -> float | None:
    return registry.get_sample_value("dma_upgrade_agent_upgrade_duration_seconds_sum")


def _append(metrics: UpgradeMetrics, stream: Stream, events: list[Event], at: datetime) -> None:
    version = len(stream.events)
    stream.store(events, at)
    metrics.observe(STREAM, version, events, at)


def test_an_upgrade_followed_from_its_first_step_is_timed_without_reading_its_stream() -> None:
    registry, stream = CollectorRegistry(), Stream()
    metrics = UpgradeMetrics(registry, stream.read)
    _append(metrics, stream, [SCHEDULED], T0)
    _append(metrics, stream, [_started(Step.UPLOAD)], T0 + timedelta(seconds=10))
    _append(metrics, stream, [StepSucceeded(step=Step.UPLOAD, attempt=1), _started(Step.INSTALL)],
            T0 + timedelta(seconds=40))
    _append(metrics, stream, [StepSucceeded(step=Step.INSTALL, attempt=1), AgentUpgradeCompleted()],
            T0 + timedelta(seconds=310))
    assert _duration_sum(registry) == 300
    assert stream.reads == 0


def test_an_upgrade_followed_after_its_first_step_is_timed_from_its_stored_first_start() -> None:
    registry, stream = CollectorRegistry(), Stream()
    stream.store([SCHEDULED, _started(Step.UPLOAD)], T0)  # before this process started
    metrics = UpgradeMetrics(registry, stream.read)
    _append(metrics, stream, [StepSucceeded(step=Step.UPLOAD, attempt=1), _started(Step.INSTALL)],
            T0 + timedelta(seconds=50))
    _append(metrics, stream, [StepSucceeded(step=Step.INSTALL, attempt=1), AgentUpgradeCompleted()],
            T0 + timedelta(seconds=200))
    assert _duration_sum(registry) == 200
    assert stream.reads >= 1


def test_a_retried_upgrade_is_timed_from_its_first_start_before_the_failure() -> None:
    registry, stream = CollectorRegistry(), Stream()
    metrics = UpgradeMetrics(registry, stream.read)
    _append(metrics, stream, [SCHEDULED], T0)
    _append(metrics, stream, [_started(Step.UPLOAD)], T0 + timedelta(seconds=5))
    _append(metrics, stream, [AgentUpgradeFailed(step=Step.UPLOAD, reason="unreachable")], T0 + timedelta(seconds=9))
    _append(metrics, stream, [AgentUpgradeRetried(resume_state="Scheduled"), _started(Step.UPLOAD)],
            T0 + timedelta(seconds=100))
    _append(metrics, stream, [StepSucceeded(step=Step.UPLOAD, attempt=1), AgentUpgradeCompleted()],
            T0 + timedelta(seconds=125))
    assert _duration_sum(registry) == 120


def test_an_upgrade_another_process_drove_meanwhile_is_timed_from_its_stored_first_start() -> None:
    registry, stream = CollectorRegistry(), Stream()
    here, there = UpgradeMetrics(registry, stream.read), UpgradeMetrics(CollectorRegistry(), stream.read)
    _append(here, stream, [SCHEDULED], T0)  # this process schedules it: no step yet, as far as it saw
    _append(there, stream, [_started(Step.UPLOAD)], T0 + timedelta(seconds=10))  # another one begins it
    _append(there, stream, [StepSucceeded(step=Step.UPLOAD, attempt=1)], T0 + timedelta(seconds=20))
    _append(here, stream, [_started(Step.INSTALL)], T0 + timedelta(seconds=50))  # and hands it back
    _append(here, stream, [StepSucceeded(step=Step.INSTALL, attempt=1), AgentUpgradeCompleted()],
            T0 + timedelta(seconds=100))
    assert _duration_sum(registry) == 90
    assert registry.get_sample_value("dma_upgrade_agent_upgrade_transitions_total", {"state": "Scheduled"}) == 1
