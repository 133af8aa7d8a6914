"""Bringing one agent's upgrade of a recorded rollout into a given state by appending its events through the service
(the aggregate's own decisions), without an engine or an agent: a step in doubt, a switch-over awaiting a manual
start. The rollout itself is left as recorded (Planned); an engine that runs it later takes the upgrade over there."""

from __future__ import annotations

from dma_upgrade.engine.agent_events import AgentLeftStopped, agent_stream_id
from dma_upgrade.engine.agent_upgrade import AgentUpgrade, upgrade_stream_id
from dma_upgrade.engine.events import Event
from dma_upgrade.engine.rollout_events import PlannedAgent, RolloutPlanned
from dma_upgrade.engine.service import UpgradeService
from dma_upgrade.engine.upgrade_events import AgentUpgradeScheduled, Step

ENGINE = "engine-test"
"""The actor of the events an engine would have recorded."""


def planned_agent(planned: RolloutPlanned, name: str) -> PlannedAgent:
    return next(a for a in planned.agents if a.name == name)


def record(service: UpgradeService, planned: RolloutPlanned, name: str, events: list[Event]) -> AgentUpgrade:
    """Append ``events`` to the upgrade of ``name`` (as the engine) and return the upgrade folded anew."""
    agent = planned_agent(planned, name)
    upgrade = service.upgrade(agent.upgrade_id)
    service.append(upgrade_stream_id(agent.upgrade_id), upgrade.version, events, actor=ENGINE,
                   correlation_id=planned.rollout_id)
    return service.upgrade(agent.upgrade_id)


def advance_to(service: UpgradeService, planned: RolloutPlanned, name: str, step: Step | None) -> AgentUpgrade:
    """Schedule the upgrade of ``name`` and record every planned step before ``step`` done (all of them when
    ``step`` is None); ``step`` itself is not started."""
    agent = planned_agent(planned, name)
    upgrade = service.upgrade(agent.upgrade_id)
    if upgrade.scheduled is None:
        upgrade = record(service, planned, name, upgrade.schedule(AgentUpgradeScheduled(
            upgrade_id=agent.upgrade_id, rollout_id=planned.rollout_id, agent=name,
            package_sha256=planned.package_sha256, target_version=planned.package_version, plan=agent.plan)))
    while upgrade.next_step is not None and upgrade.next_step is not step:
        done = upgrade.next_step
        upgrade = record(service, planned, name, upgrade.start_step(done))
        version_after = planned.package_version if done is Step.INSTALL else None
        upgrade = record(service, planned, name, upgrade.finish_step(done, version_after))
    return upgrade


def put_in_doubt(service: UpgradeService, planned: RolloutPlanned, name: str, step: Step,
                 reason: str = "no answer within 1800 s") -> AgentUpgrade:
    """The upgrade of ``name`` with ``step`` started (attempt 1) and its outcome in doubt for ``reason``."""
    upgrade = advance_to(service, planned, name, step)
    upgrade = record(service, planned, name, upgrade.start_step(step))
    return record(service, planned, name, upgrade.mark_in_doubt(step, reason))


def await_manual_start(service: UpgradeService, planned: RolloutPlanned, name: str) -> AgentUpgrade:
    """The upgrade of a pair member (Auto Start off) done up to its switch-over, the agent left stopped, and the
    switch-over waiting for an operator to start it."""
    upgrade = advance_to(service, planned, name, Step.SWITCH_OVER)
    assert upgrade.scheduled is not None
    agent = service.agent(name)
    service.append(agent_stream_id(name), agent.stream_version,
                   [AgentLeftStopped(upgrade_id=str(upgrade.scheduled.upgrade_id))], actor=ENGINE,
                   correlation_id=planned.rollout_id)
    return record(service, planned, name, upgrade.await_manual_start(name))
