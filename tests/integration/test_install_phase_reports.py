"""What the log keeps of an install's phases (``engine.phase_reports``, ``DMA_UPGRADE_INSTALL_PHASE_SECONDS``).

Invariants: the first phase of an install is recorded; then at most one every interval; the phase the install
stood at when its outcome is recorded is always recorded, in the same append as that outcome, so nothing else
comes between them; an interval of zero records every phase; and every phase reaches the engine in order."""

from __future__ import annotations

from collections.abc import Callable

from dma_upgrade.engine.events import RecordedEvent
from dma_upgrade.engine.packages import INSTALL_PHASES
from dma_upgrade.engine.rollout import RolloutState
from dma_upgrade.engine.upgrade_events import InstallPhaseReported, Step, StepFailed, StepSucceeded
from tests.conftest import FakeClock
from tests.integration.rollout_harness import RolloutHarness

AGENT = "dma-1"
LAST = len(INSTALL_PHASES) - 1


def _recorded_phases(events: list[RecordedEvent]) -> list[int]:
    return [r.event.phase_index for r in events if isinstance(r.event, InstallPhaseReported)]


def _after_last_phase(events: list[RecordedEvent]) -> RecordedEvent:
    """The event recorded right after the last recorded phase report."""
    last = max(i for i, r in enumerate(events) if isinstance(r.event, InstallPhaseReported))
    assert events[last + 1].position == events[last].position + 1
    return events[last + 1]


def test_the_setting_reaches_the_runner(harness: RolloutHarness) -> None:
    assert harness.runner().phase_seconds == 5.0


def test_an_install_faster_than_the_interval_records_its_first_phase_and_the_last_with_its_outcome(
        harness: RolloutHarness) -> None:
    planned, rollout = harness.start_and_run(names=(AGENT,))
    assert rollout.state is RolloutState.COMPLETED
    events = harness.upgrade_events(planned, AGENT)
    assert _recorded_phases(events) == [0, LAST]
    assert isinstance(_after_last_phase(events).event, StepSucceeded)


def test_phases_are_recorded_at_most_once_per_interval(make_harness: Callable[..., RolloutHarness],
                                                       clock: FakeClock) -> None:
    per_phase = 2.0  # phase i is reported at 2i seconds: 0 recorded, 3 at 6 s, 6 at 12 s, 9 at 18 s, 11 held
    harness = make_harness(step_seconds={Step.INSTALL: per_phase * len(INSTALL_PHASES)}, sleeper=clock.advance)
    planned, rollout = harness.start_and_run(names=(AGENT,))
    assert rollout.state is RolloutState.COMPLETED
    events = harness.upgrade_events(planned, AGENT)
    assert _recorded_phases(events) == [0, 3, 6, 9, LAST]
    assert isinstance(_after_last_phase(events).event, StepSucceeded)


def test_the_phase_an_install_failed_in_is_recorded_with_the_failure(harness: RolloutHarness) -> None:
    harness.gateway.break_during_install(AGENT, phase="Delete", times=99)
    planned, _ = harness.start_and_run(names=(AGENT,), max_errors="100%")
    events = harness.upgrade_events(planned, AGENT)
    failed_in = INSTALL_PHASES.index("Delete")
    attempts = [r for r in events if isinstance(r.event, StepFailed) and r.event.step is Step.INSTALL]
    assert attempts, "the install never failed"
    phases = _recorded_phases(events)
    assert phases == [0, failed_in] * len(attempts)  # each attempt: its first phase, and the one it failed in
    assert isinstance(_after_last_phase(events).event, StepFailed)


def test_an_interval_of_zero_records_every_phase(harness: RolloutHarness) -> None:
    planned = harness.start(names=(AGENT,))
    runner = harness.runner()
    runner.phase_seconds = 0.0
    assert runner.run(planned.rollout_id).state is RolloutState.COMPLETED
    assert _recorded_phases(harness.upgrade_events(planned, AGENT)) == list(range(len(INSTALL_PHASES)))
