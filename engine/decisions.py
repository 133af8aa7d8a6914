"""The engine's decisions, pure: what to do next for one agent upgrade and for one rollout.

Everything here is a function of what the events say (the folded upgrade and rollout, the agent's
record), the time, and the one thing a driver knows that the events do not: whether it recorded the
intent of the step in progress itself and has sent nothing for it since. The runtime
(``adapters/runtime``) carries the actions out (agent calls, appends, waits) and feeds the answers back
through the outcome functions below; the model checker (``engine/model_check.py``) explores every
interleaving of the same functions. The safety invariants they keep are in ``docs/invariants.md``.
"""

from __future__ import annotations

import copy
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from dma_upgrade.engine.agent_events import AgentLeftStopped, AgentVersionChanged, AgentWebUpgraded
from dma_upgrade.engine.agent_upgrade import AgentUpgrade
from dma_upgrade.engine.errors import InvalidTransition
from dma_upgrade.engine.events import Event
from dma_upgrade.engine.inventory import AgentRecord
from dma_upgrade.engine.ports import StepOutcome, StepStatus
from dma_upgrade.engine.rollout import Rollout, RolloutState
from dma_upgrade.engine.rollout_events import PlannedAgent, RolloutPlanned, StepPolicy
from dma_upgrade.engine.upgrade_events import Step, StepStarted
from dma_upgrade.engine.upgrade_machine import CANCELLABLE_STATES, STOPPED_STATES, TERMINAL_STATES, UpgradeState
from dma_upgrade.engine.versions import version_identity


@dataclass(frozen=True)
class UpgradeFacts:
    """What one upgrade's decision reads besides the upgrade itself."""

    now: datetime
    policy: StepPolicy
    agent: AgentRecord
    cancelled: bool = False
    """The rollout was seen cancelled."""
    intent_fresh: bool = False
    """This driver recorded the intent of the step in progress and has sent nothing for it since."""


@dataclass(frozen=True)
class Record:
    """Append these events to the upgrade's stream."""

    events: tuple[Event, ...]


@dataclass(frozen=True)
class LeaveStopped:
    """Record on the agent's stream that the upgrade leaves its DataMiner stopped (``left_stopped``)."""


@dataclass(frozen=True)
class WaitUntil:
    """Nothing to do before ``due`` (a delayed start, a retry backoff, a scheduled start)."""

    due: datetime


@dataclass(frozen=True)
class AwaitManualStart:
    """The switch-over waits for an operator to start ``agent`` (Auto Start off)."""

    agent: str


@dataclass(frozen=True)
class Send:
    """Ask the agent to perform ``step`` under ``key`` (its intent is recorded)."""

    step: Step
    key: str


@dataclass(frozen=True)
class Ask:
    """Ask the agent what it knows of ``key`` (``step``'s outcome is not known) before anything is re-sent."""

    step: Step
    key: str


@dataclass(frozen=True)
class Finished:
    """The upgrade needs nothing more from an engine (completed, cancelled, or failed for an operator)."""


UpgradeAction = Record | LeaveStopped | WaitUntil | AwaitManualStart | Send | Ask | Finished
FINISHED = Finished()


def next_action(upgrade: AgentUpgrade, facts: UpgradeFacts) -> UpgradeAction:
    """The next thing to do for one upgrade."""
    if upgrade.state in STOPPED_STATES:
        return FINISHED
    in_progress = upgrade.step_in_progress
    if in_progress is not None:
        key = upgrade.idempotency_key(in_progress, upgrade.attempts[in_progress])
        if facts.intent_fresh or upgrade.status_learned is not None:
            return Send(in_progress, key)  # never sent, or the agent said what it knows of the key
        return Ask(in_progress, key)  # sent, or perhaps sent (a crash, a timeout): ask first
    if upgrade.state in CANCELLABLE_STATES and facts.cancelled:
        return Record(tuple(upgrade.cancel("the rollout was cancelled")))
    step = upgrade.next_step
    if step is None:
        if leaves_agent_stopped(upgrade, facts.agent) and not _marked_stopped(upgrade, facts.agent):
            return LeaveStopped()
        return Record(tuple(upgrade.complete()))
    if upgrade.attempts_this_round.get(step, 0) > facts.policy.retry_budget:
        return Record(tuple(upgrade.fail(upgrade.last_error or f"{step.value} failed")))
    if step is Step.SWITCH_OVER and upgrade.plan.awaits_manual_start and not started_by_hand(upgrade, facts.agent):
        if not _marked_stopped(upgrade, facts.agent):
            return LeaveStopped()
        if not upgrade.awaiting_manual_start:
            return Record(tuple(upgrade.await_manual_start(facts.agent.name)))
        return AwaitManualStart(facts.agent.name)
    delay = upgrade.plan.delayed_start_seconds
    if step is Step.START and delay and upgrade.waiting_until is None and not upgrade.attempts_this_round.get(step):
        return Record(tuple(upgrade.delay_step(step, facts.now + timedelta(seconds=delay), "delayed start")))
    if upgrade.waiting_until is not None and upgrade.waiting_until > facts.now:
        return WaitUntil(upgrade.waiting_until)
    return Record(tuple(upgrade.start_step(step)))


def leaves_agent_stopped(upgrade: AgentUpgrade, agent: AgentRecord) -> bool:
    """Whether the upgrade ends with the agent's DataMiner stopped (Auto Start off, not started by hand)."""
    plan = upgrade.plan
    return plan.stops_dataminer and not plan.options.auto_start and not started_by_hand(upgrade, agent)


def _upgrade_id(upgrade: AgentUpgrade) -> str:
    assert upgrade.scheduled is not None
    return str(upgrade.scheduled.upgrade_id)


def _marked_stopped(upgrade: AgentUpgrade, agent: AgentRecord) -> bool:
    return agent.stopped_by_upgrade == _upgrade_id(upgrade)


def started_by_hand(upgrade: AgentUpgrade, agent: AgentRecord) -> bool:
    """Whether an operator started the agent after this upgrade left it stopped (Auto Start off)."""
    return upgrade.manual_start_seen or agent.started_by_hand_after == _upgrade_id(upgrade)


def left_stopped(upgrade: AgentUpgrade, agent: AgentRecord) -> list[Event]:
    """The agent-stream events of ``LeaveStopped`` (none when already recorded)."""
    return [] if _marked_stopped(upgrade, agent) else [AgentLeftStopped(upgrade_id=_upgrade_id(upgrade))]


# -- outcomes: what an agent's answer (or silence) records ------------------------------------------


def answered(upgrade: AgentUpgrade, step: Step, outcome: StepOutcome, target_version: str) -> list[Event]:
    """The agent reported ``step`` done; after an install it must run the package's version (a web-only install
    leaves DataMiner's version as it was: the answer's version is not the package's, and is not recorded)."""
    if step is Step.INSTALL and upgrade.plan.web_only:
        return upgrade.finish_step(step)
    if step is Step.INSTALL and outcome.version_after != target_version:
        assert upgrade.scheduled is not None
        return upgrade.fail(f"agent {upgrade.scheduled.agent} reports version {outcome.version_after} after the "
                            f"install, expected {target_version}")
    return upgrade.finish_step(step, outcome.version_after)


def reports_version(step: Step, outcome: StepOutcome) -> bool:
    """Whether an answered step tells the agent's version (an install does): only then is its record read."""
    return step is Step.INSTALL and outcome.version_after is not None


def version_change(agent: AgentRecord, upgrade: AgentUpgrade, step: Step, outcome: StepOutcome) -> list[Event]:
    """The agent-stream events of an answered step: a new version after an install (once); after a web-only
    install, the web upgrade (once), the DataMiner version unchanged."""
    if reports_version(step, outcome) and upgrade.plan.web_only:
        assert upgrade.scheduled is not None
        upgrade_id = _upgrade_id(upgrade)
        return [] if agent.last_web_upgrade == upgrade_id else [
            AgentWebUpgraded(web_version=upgrade.scheduled.target_version, upgrade_id=upgrade_id)]
    after = outcome.version_after if reports_version(step, outcome) else None
    if after is None or version_identity(after) == version_identity(agent.version):  # notation is no change
        return []
    return [AgentVersionChanged(version=after, previous_version=agent.version,
                                upgrade_id=_upgrade_id(upgrade))]


def refused(upgrade: AgentUpgrade, step: Step, reason: str, policy: StepPolicy, now: datetime) -> list[Event]:
    """The agent answered that ``step`` failed (so it did not apply it): the attempt failed, and the step
    backs off, or the upgrade fails once the retry budget is spent, in one append."""
    failed = upgrade.fail_attempt(step, reason)
    after = copy.deepcopy(upgrade)
    for event in failed:
        after.apply(event)
    attempts = after.attempts_this_round[step]
    if attempts > policy.retry_budget:
        return [*failed, *after.fail(reason)]
    backoff = policy.backoff_seconds * 2 ** (attempts - 1)
    return [*failed, *after.delay_step(step, now + timedelta(seconds=backoff), "retry backoff")]


def unanswered(upgrade: AgentUpgrade, step: Step, reason: str) -> list[Event]:
    """No answer (a timeout, a cut connection, or the agent could not be asked): the step is in doubt.
    Recorded once; the engine asks the agent before it sends anything again."""
    return [] if upgrade.in_doubt else upgrade.mark_in_doubt(step, reason)


def learned(upgrade: AgentUpgrade, step: Step, status: StepStatus, policy: StepPolicy,
            now: datetime) -> list[Event]:
    """What the agent said of the key of ``step`` when asked: a failed step is a refused attempt; otherwise
    (never applied, running, succeeded) the step is sent again under the same key."""
    if status is StepStatus.FAILED:
        return refused(upgrade, step, "the agent reports the step failed", policy, now)
    return upgrade.learn_status(step, status.value)


# -- the rollout --------------------------------------------------------------------------------


def ready_agents(candidates: Iterable[PlannedAgent], upgrades: Mapping[str, AgentUpgrade],
                 in_flight: Collection[str], room: int) -> list[PlannedAgent]:
    """Of ``candidates``, in their order: those not in flight nor stopped, the agents they wait for
    completed (a pair's backup before its main), at most ``room`` of them."""
    ready: list[PlannedAgent] = []
    if room <= 0:
        return ready
    for agent in candidates:
        if agent.name not in in_flight and upgrades[agent.name].state not in STOPPED_STATES \
                and all(upgrades[b].state is UpgradeState.COMPLETED for b in agent.after):
            ready.append(agent)
            if len(ready) == room:
                break
    return ready


def agents_to_start(rollout: Rollout, candidates: Iterable[PlannedAgent], upgrades: Mapping[str, AgentUpgrade],
                    in_flight: Collection[str], room: int, failed: int) -> list[PlannedAgent]:
    """The agents whose drive starts now: any ready one while the rollout runs within its error budget
    (``failed`` upgrades so far); once it is cancelled or over budget, only upgrades under way (found so after a
    restart), which are driven to where they may stop; none while it is paused."""
    if rollout.state is RolloutState.RUNNING and failed <= rollout.plan.max_errors:
        return ready_agents(candidates, upgrades, in_flight, room)
    if rollout.state not in (RolloutState.RUNNING, RolloutState.CANCELLED):
        return []
    return ready_agents((a for a in candidates if under_way(upgrades[a.name])), upgrades, in_flight, room)


def under_way(upgrade: AgentUpgrade) -> bool:
    """Whether the upgrade is past the point where it may be stopped: a step in progress, or installing on."""
    return upgrade.state not in STOPPED_STATES and (upgrade.step_in_progress is not None
                                                     or upgrade.state not in CANCELLABLE_STATES)


def retries(rollout: Rollout, upgrades: Mapping[str, AgentUpgrade],
            in_flight: Collection[str]) -> dict[str, list[Event]]:
    """Each upgrade the operator asked to retry (retry-failed) or to take up again (continue) more often than it
    was retried: its retry events. A failed upgrade resumes where it failed, a cancelled one (only once its
    rollout is no longer cancelled) where it was cancelled."""
    return {name: upgrade.retry() for name, requested in rollout.retry_requests.items()
            if (upgrade := upgrades.get(name)) is not None and name not in in_flight
            and requested > upgrade.retries and _may_retry(rollout, upgrade)}


def begins_install(events: Iterable[Event]) -> bool:
    """Whether these upgrade events record the intent of an install: the package is marked used just before."""
    return any(isinstance(event, StepStarted) and event.step is Step.INSTALL for event in events)


def _may_retry(rollout: Rollout, upgrade: AgentUpgrade) -> bool:
    return upgrade.is_failed or (upgrade.state is UpgradeState.CANCELLED
                                 and rollout.state is not RolloutState.CANCELLED)


def continued_agents(rollout: Rollout, upgrades: Mapping[str, AgentUpgrade]) -> tuple[str, ...]:
    """The agents of a failed or cancelled rollout that did not complete and that ``continue`` takes up again
    (``InvalidTransition`` when it may not be continued): those whose upgrade failed or was cancelled. Refused
    while an upgrade is under way (its rollout is still running) and when every agent completed."""
    states = {agent.name: upgrades[agent.name].state if upgrades[agent.name].scheduled is not None else None
              for agent in rollout.plan.agents}
    if rollout.state not in (RolloutState.FAILED, RolloutState.CANCELLED):
        raise InvalidTransition(rollout.state, "continue the rollout",
                                "only a failed or cancelled rollout can be continued")
    if any(state is not None and state not in STOPPED_STATES for state in states.values()) \
            and rollout.state is RolloutState.CANCELLED:
        raise InvalidTransition(rollout.state, "continue the rollout", "agents of it are still upgrading")
    if all(state is UpgradeState.COMPLETED for state in states.values()):
        raise InvalidTransition(rollout.state, "continue the rollout", "every agent of it completed")
    return tuple(name for name, state in states.items()
                 if state in (UpgradeState.FAILED, UpgradeState.CANCELLED))


def cancellations(rollout: Rollout, upgrades: Mapping[str, AgentUpgrade], in_flight: Collection[str],
                  reason: str = "the rollout was cancelled") -> dict[str, list[Event]]:
    """In a cancelled rollout, every scheduled upgrade not in flight that may still be cancelled: its cancel
    events."""
    if rollout.state is not RolloutState.CANCELLED:
        return {}
    return {agent.name: upgrade.cancel(reason) for agent in rollout.plan.agents
            if agent.name not in in_flight and (upgrade := upgrades[agent.name]).scheduled is not None
            and upgrade.state in CANCELLABLE_STATES and not under_way(upgrade)}


def conclusion(rollout: Rollout, upgrades: Mapping[str, AgentUpgrade]) -> list[Event]:
    """With nothing in flight: the events that end a running rollout (completed once every upgrade ended,
    failed when an upgrade failed and no more can start); none while it may go on or has ended."""
    if rollout.state is not RolloutState.RUNNING:
        return []
    if all(u.state in TERMINAL_STATES for u in upgrades.values()):
        completed = sum(u.state is UpgradeState.COMPLETED for u in upgrades.values())
        return rollout.complete(completed, len(upgrades) - completed)
    failed = failed_count(upgrades)
    reason = (f"error budget exceeded: {failed} agents failed, --max-errors is {rollout.plan.max_errors}"
              if failed > rollout.plan.max_errors else f"{failed} of {len(upgrades)} agents failed")
    return rollout.fail(reason)


def ended(rollout: Rollout) -> bool:
    """Whether the rollout needs nothing more from its runner."""
    return rollout.state in (RolloutState.COMPLETED, RolloutState.CANCELLED, RolloutState.FAILED)


def start_due(plan: RolloutPlanned, now: datetime) -> WaitUntil | None:
    """A scheduled rollout not yet due: wait for its start time."""
    return WaitUntil(plan.start_at) if plan.start_at is not None and plan.start_at > now else None


def failed_agents(rollout: Rollout, upgrades: Mapping[str, AgentUpgrade]) -> tuple[str, ...]:
    """The agents of ``rollout`` whose upgrade failed, in plan order (what ``retry-failed`` takes up again)."""
    return tuple(agent.name for agent in rollout.plan.agents if upgrades[agent.name].is_failed)


def failed_count(upgrades: Mapping[str, AgentUpgrade]) -> int:
    """How many upgrades are failed."""
    return sum(u.state is UpgradeState.FAILED for u in upgrades.values())
