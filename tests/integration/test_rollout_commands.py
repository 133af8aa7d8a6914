"""The one dispatcher of rollout commands: each command type, in a state that allows it, appends its one event on the
rollout's stream with the caller as actor, and the rollout is in the state that event leads to."""

from __future__ import annotations

from collections.abc import Callable
from uuid import UUID

import pytest

from dma_upgrade.engine.commands import (
    COMMANDS,
    CancelRollout,
    ContinueRollout,
    PauseRollout,
    ResumeRollout,
    RetryFailedAgents,
    RolloutCommand,
)
from dma_upgrade.engine.events import Event
from dma_upgrade.engine.rollout import STATE_AFTER, RolloutState
from dma_upgrade.engine.rollout_events import (
    FailedAgentsRetried,
    RolloutCancelled,
    RolloutContinued,
    RolloutPaused,
    RolloutResumed,
    rollout_stream_id,
)
from dma_upgrade.engine.upgrade_events import Step
from tests.integration.rollout_harness import ACTOR, RolloutHarness


def planned(h: RolloutHarness) -> UUID:
    return h.start(names=("dma-1",)).rollout_id


def running(h: RolloutHarness) -> UUID:
    rollout_id = planned(h)
    h.service.append(rollout_stream_id(rollout_id), 1, h.service.rollout(rollout_id).start(), actor=ACTOR)
    return rollout_id


def paused(h: RolloutHarness) -> UUID:
    rollout_id = running(h)
    h.service.control(PauseRollout(rollout_id), actor=ACTOR)
    return rollout_id


def failed(h: RolloutHarness) -> UUID:
    h.gateway.fail("dma-1", Step.INSTALL, times=None)
    plan, ended = h.start_and_run(names=("dma-1",))
    assert ended.state is RolloutState.FAILED
    h.gateway.heal("dma-1")
    return plan.rollout_id


def cancelled(h: RolloutHarness) -> UUID:
    rollout_id = planned(h)
    h.service.control(CancelRollout(rollout_id), actor=ACTOR)
    return rollout_id


CASES: dict[type[RolloutCommand], tuple[Callable[[RolloutHarness], UUID], type[Event]]] = {
    PauseRollout: (running, RolloutPaused),
    ResumeRollout: (paused, RolloutResumed),
    CancelRollout: (running, RolloutCancelled),
    RetryFailedAgents: (failed, FailedAgentsRetried),
    ContinueRollout: (cancelled, RolloutContinued),
}


def test_every_command_has_a_case() -> None:
    assert set(CASES) == set(COMMANDS.values())


@pytest.mark.parametrize("command", list(CASES), ids=lambda c: c.name)
def test_each_command_appends_its_event_and_leads_to_its_state(harness: RolloutHarness,
                                                               command: type[RolloutCommand]) -> None:
    before, event = CASES[command]
    rollout_id = before(harness)
    version = harness.service.rollout(rollout_id).version

    after = harness.service.control(command(rollout_id), actor="carol")

    stream = harness.store.read_stream(rollout_stream_id(rollout_id))
    appended = stream[version]
    assert type(appended.event) is event and appended.metadata.actor == "carol"
    assert after.state is STATE_AFTER[event]
    if isinstance(appended.event, FailedAgentsRetried):
        assert appended.event.agents == ("dma-1",)
