"""The progress projection: the attempt of the step in flight, and agents a cancelled rollout never began."""

from __future__ import annotations

from uuid import uuid4

from engine.rollout_events import RolloutCancelled, RolloutStarted, rollout_stream_id
from engine.upgrade_events import AgentUpgradeScheduled, Step, StepFailed, StepStarted, StepSucceeded
from projections.progress import AGENTS, ROLLOUTS, ProgressProjection
from tests.unit.test_projections_history_inventory_timers import Feed, planned, run, table


def test_the_activity_counts_attempts_of_the_step_in_flight_not_of_the_whole_upgrade() -> None:
    feed, rollout_id = Feed(), uuid4()
    plan = planned(rollout_id)
    agent = plan.agents[0]
    stream = f"upgrade-{agent.upgrade_id}"
    rows = run(ProgressProjection(), [
        feed(rollout_stream_id(rollout_id), plan),
        feed(stream, AgentUpgradeScheduled(upgrade_id=agent.upgrade_id, rollout_id=rollout_id, agent=agent.name,
                                           package_sha256=plan.package_sha256, target_version=plan.package_version,
                                           plan=agent.plan)),
        feed(stream, StepStarted(step=Step.UPLOAD, attempt=1, idempotency_key="k1")),
        feed(stream, StepSucceeded(step=Step.UPLOAD, attempt=1)),
        feed(stream, StepStarted(step=Step.INSTALL, attempt=1, idempotency_key="k2")),
    ])
    row = table(rows, AGENTS.name)[0]
    assert (row["step"], row["step_attempt"], row["attempts"]) == ("install", 1, 2)

    run(ProgressProjection(), [feed(stream, StepFailed(step=Step.INSTALL, attempt=1, error="boom")),
                               feed(stream, StepStarted(step=Step.INSTALL, attempt=2, idempotency_key="k3"))], rows)
    row = table(rows, AGENTS.name)[0]
    assert (row["step"], row["step_attempt"], row["attempts"]) == ("install", 2, 3)


def test_cancelling_a_rollout_cancels_the_agents_it_never_began_and_leaves_the_others() -> None:
    feed, rollout_id = Feed(), uuid4()
    plan = planned(rollout_id, agents=("dma-1", "dma-2", "dma-3"))
    began = plan.agents[0]
    stream = f"upgrade-{began.upgrade_id}"
    rows = run(ProgressProjection(), [
        feed(rollout_stream_id(rollout_id), plan),
        feed(rollout_stream_id(rollout_id), RolloutStarted()),
        feed(stream, AgentUpgradeScheduled(upgrade_id=began.upgrade_id, rollout_id=rollout_id, agent=began.name,
                                           package_sha256=plan.package_sha256, target_version=plan.package_version,
                                           plan=began.plan)),
        feed(stream, StepStarted(step=Step.UPLOAD, attempt=1, idempotency_key="k1")),
        feed(rollout_stream_id(rollout_id), RolloutCancelled(reason="operator")),
    ])
    states = {r["agent"]: r["state"] for r in table(rows, AGENTS.name)}
    assert states == {"dma-1": "Scheduled", "dma-2": "Cancelled", "dma-3": "Cancelled"}  # dma-1 is uploading
    rollout = table(rows, ROLLOUTS.name)[0]
    assert (rollout["state"], rollout["waiting"], rollout["in_flight"], rollout["cancelled"]) == ("Cancelled", 0, 1, 2)
