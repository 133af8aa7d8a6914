"""What the log keeps of an install's phases (``engine.phase_reports``, ``DMA_UPGRADE_INSTALL_PHASE_SECONDS``).

Invariants: the first phase of an install is recorded; then at most one every interval; the phase the install
stood at when its outcome is recorded is always recorded, in the same append as that outcome, so nothing else
comes between them; an interval of zero records every phase; and every phase reaches the engine in order."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest

from dma_upgrade.adapters.agents.simulated_gateway import SimulatedAgentGateway
from dma_upgrade.engine.errors import AgentOutcomeUnknown
from dma_upgrade.engine.events import Event, RecordedEvent
from dma_upgrade.engine.packages import INSTALL_PHASES
from dma_upgrade.engine.ports import AgentAddress, AppendResult, PackageRef, PhaseReporter, StepOutcome
from dma_upgrade.engine.rollout import RolloutState
from dma_upgrade.engine.upgrade_events import InstallPhaseReported, Step, StepFailed, StepInDoubt, StepSucceeded
from tests.conftest import FakeClock
from tests.integration.rollout_harness import RolloutHarness

AGENT = "dma-1"
LAST = len(INSTALL_PHASES) - 1


def _recorded_phases(events: list[RecordedEvent]) -> list[int]:
    return [r.event.phase_index for r in events if isinstance(r.event, InstallPhaseReported)]


def _appends(harness: RolloutHarness, monkeypatch: pytest.MonkeyPatch) -> list[list[Event]]:
    """The events of every append the service makes from now on, one list per append."""
    made: list[list[Event]] = []
    append = harness.service.append

    def counted(stream_id: str, expected_version: int, events: Sequence[Event], **kwargs: Any) -> AppendResult:
        made.append(list(events))
        return append(stream_id, expected_version, events, **kwargs)

    monkeypatch.setattr(harness.service, "append", counted)
    return made


def _with_last_phase(appends: list[list[Event]]) -> list[Event]:
    """The append that holds the last phase report recorded."""
    return [events for events in appends if any(isinstance(e, InstallPhaseReported) for e in events)][-1]


def test_the_setting_reaches_the_runner(harness: RolloutHarness) -> None:
    assert harness.runner().phase_seconds == 5.0


def test_an_install_faster_than_the_interval_records_its_first_phase_and_the_last_with_its_outcome(
        harness: RolloutHarness, monkeypatch: pytest.MonkeyPatch) -> None:
    appends = _appends(harness, monkeypatch)
    planned, rollout = harness.start_and_run(names=(AGENT,))
    assert rollout.state is RolloutState.COMPLETED
    assert _recorded_phases(harness.upgrade_events(planned, AGENT)) == [0, LAST]
    assert [type(e) for e in _with_last_phase(appends)] == [InstallPhaseReported, StepSucceeded]


def test_phases_are_recorded_at_most_once_per_interval(make_harness: Callable[..., RolloutHarness],
                                                       clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
    per_phase = 2.0  # phase i is reported at 2i seconds: 0 recorded, 3 at 6 s, 6 at 12 s, 9 at 18 s, 11 held
    harness = make_harness(step_seconds={Step.INSTALL: per_phase * len(INSTALL_PHASES)}, sleeper=clock.advance)
    appends = _appends(harness, monkeypatch)
    planned, rollout = harness.start_and_run(names=(AGENT,))
    assert rollout.state is RolloutState.COMPLETED
    assert _recorded_phases(harness.upgrade_events(planned, AGENT)) == [0, 3, 6, 9, LAST]
    assert [type(e) for e in _with_last_phase(appends)] == [InstallPhaseReported, StepSucceeded]


def test_the_phase_an_install_failed_in_is_recorded_with_the_failure(harness: RolloutHarness,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    harness.gateway.break_during_install(AGENT, phase="Delete", times=99)
    appends = _appends(harness, monkeypatch)
    planned, _ = harness.start_and_run(names=(AGENT,), max_errors="100%")
    events = harness.upgrade_events(planned, AGENT)
    failed_in = INSTALL_PHASES.index("Delete")
    attempts = [r for r in events if isinstance(r.event, StepFailed) and r.event.step is Step.INSTALL]
    assert attempts, "the install never failed"
    phases = _recorded_phases(events)
    assert phases == [0, failed_in] * len(attempts)  # each attempt: its first phase, and the one it failed in
    assert [type(e) for e in _with_last_phase(appends)][:2] == [InstallPhaseReported, StepFailed]


def test_an_interval_of_zero_records_every_phase(harness: RolloutHarness) -> None:
    planned = harness.start(names=(AGENT,))
    runner = harness.runner()
    runner.phase_seconds = 0.0
    assert runner.run(planned.rollout_id).state is RolloutState.COMPLETED
    assert _recorded_phases(harness.upgrade_events(planned, AGENT)) == list(range(len(INSTALL_PHASES)))


class AnswerLost:
    """The harness's agents, whose answer to the first install is lost after it went through (a cut connection)."""

    def __init__(self, inner: SimulatedAgentGateway) -> None:
        self.inner = inner
        self.lost = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def perform(self, agent: AgentAddress, step: Step, idempotency_key: str, package: PackageRef,
                on_phase: PhaseReporter | None = None) -> StepOutcome:
        outcome = self.inner.perform(agent, step, idempotency_key, package, on_phase)
        if step is Step.INSTALL and not self.lost:
            self.lost = True
            raise AgentOutcomeUnknown(agent.name, step.value, "the connection was cut before the answer")
        return outcome


def test_the_phase_an_install_stood_at_when_its_answer_was_lost_is_recorded_with_the_doubt(
        harness: RolloutHarness, monkeypatch: pytest.MonkeyPatch) -> None:
    appends = _appends(harness, monkeypatch)
    planned = harness.start(names=(AGENT,))
    runner = harness.runner()
    runner.gateway = AnswerLost(harness.gateway)
    assert runner.run(planned.rollout_id).state is RolloutState.COMPLETED  # asked, the agent says it installed
    assert _recorded_phases(harness.upgrade_events(planned, AGENT)) == [0, LAST]
    assert [type(e) for e in _with_last_phase(appends)] == [InstallPhaseReported, StepInDoubt]
    assert [step for name, step in harness.gateway.journal() if name == AGENT].count(Step.INSTALL) == 1
