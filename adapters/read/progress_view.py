"""Rendering the Progress tab for people and machines, from its public shape (``RolloutProgressOut``): built
straight from the progress projection's rows on the local database, parsed from the API's JSON from a server."""

from __future__ import annotations

from datetime import datetime

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from dma_upgrade.adapters.clock import seconds_text, short_id, utc_text
from dma_upgrade.adapters.shapes.models import AgentProgressOut, RolloutProgressOut
from dma_upgrade.engine.rollout import RolloutState
from dma_upgrade.engine.rollout_events import LATE_START_TOLERANCE_SECONDS
from dma_upgrade.engine.upgrade_machine import UpgradeState

_STYLE: dict[str, str] = {UpgradeState.COMPLETED: "green", UpgradeState.FAILED: "red", UpgradeState.CANCELLED: "yellow"}
BAR_WIDTH = 24
RESOLVE_COMMAND = "dma-upgrade upgrade resolve"
"""How an operator decides a step in doubt (``upgrade resolve ROLLOUT AGENT --applied|--not-applied``)."""


def fraction(agent: AgentProgressOut) -> float:
    """How far one agent's upgrade is: planned steps done, all of it once completed."""
    if agent.state == UpgradeState.COMPLETED:
        return 1.0
    return min(agent.steps_done / max(agent.steps_planned, 1), 1.0)


def activity(agent: AgentProgressOut) -> str:
    """What the agent is doing or why it stopped, in a few words."""
    if agent.state == UpgradeState.FAILED:
        return agent.last_error or "failed"
    if agent.state == UpgradeState.COMPLETED:
        return "needs a manual start" if agent.manual_start_needed else "done"
    if agent.in_doubt:
        return (f"in doubt: {(agent.step or 'a step').replace('_', ' ')} (attempt {agent.step_attempt or 1}): "
                f"{agent.last_error or 'no answer'} — ask pending; resolve with {RESOLVE_COMMAND}")
    if agent.phase:
        return f"Installing: {agent.phase}"
    if agent.step:
        return f"{agent.step.replace('_', ' ')} (attempt {agent.step_attempt or 1})"
    if agent.awaiting_manual_start:
        return f"waiting for a manual start of {agent.awaiting_manual_start} before the switch-over"
    if agent.waiting_until:
        return f"waiting until {agent.waiting_until:%H:%M:%S}"
    return "waiting"


def start_line(rollout: RolloutProgressOut) -> str | None:
    """When a scheduled rollout was to start and when it did: ``scheduled for T`` while it waits, ``scheduled T,
    started T2 (N s late)`` once started (``on time`` within ``LATE_START_TOLERANCE_SECONDS``); None when it was
    not scheduled."""
    start_at = rollout.start_at
    if start_at is None:
        return None
    started_at = rollout.started_at
    if started_at is None:
        never = "" if rollout.state == RolloutState.PLANNED else ", never started"
        return f"scheduled for {utc_text(start_at)}{never}"
    late = rollout.start_lateness_seconds or 0.0
    how = f"{seconds_text(late)} s late" if late > LATE_START_TOLERANCE_SECONDS else "on time"
    return f"scheduled {utc_text(start_at)}, started {utc_text(started_at)} ({how})"


def scheduled_start(start_at: datetime, now: datetime) -> str:
    """A start a rollout still Planned waits for: ``scheduled for T``, or, once ``start_at`` passed with no engine
    to fire it, ``overdue: scheduled T, N s ago; starts as soon as an engine runs``."""
    overdue = (now - start_at).total_seconds()
    if overdue <= 0:
        return f"scheduled for {utc_text(start_at)}"
    return f"overdue: scheduled {utc_text(start_at)}, {seconds_text(overdue)} s ago; starts as soon as an engine runs"


def progress_table(rollout: RolloutProgressOut) -> RenderableType:
    """One rollout: a row and a bar per agent, its scheduled start if it has one (``start_line``), then the totals,
    then the plan's notes (what its failover pairs go through) and its warnings."""
    table = Table(title=f"Rollout {rollout.rollout_id} · {rollout.package_version} · {rollout.state}",
                  title_justify="left")
    for column in ("agent", "role", "state", "progress", "activity", "resumed"):
        table.add_column(column)
    for agent in sorted(rollout.agents, key=lambda a: a.plan_order):
        style = _STYLE.get(agent.state, "cyan")
        done = fraction(agent)
        bar = "█" * round(done * BAR_WIDTH) + "░" * (BAR_WIDTH - round(done * BAR_WIDTH))
        table.add_row(agent.agent, agent.failover_role or "", Text(agent.state, style=style),
                      Text(f"{bar} {done:4.0%}", style=style), activity(agent),
                      f"{agent.resumes}x" if agent.resumes else "")
    totals = Text(totals_text(rollout))
    notes = [Text(f"note: {note}") for note in rollout.notes or ()]
    warnings = [Text(f"warning: {warning}", style="yellow") for warning in rollout.warnings or ()]
    start = start_line(rollout)
    return Group(table, *([Text(start)] if start else []), totals, *notes, *warnings)


def totals_text(rollout: RolloutProgressOut) -> str:
    """How many agents stand where, and why the rollout ended if it did."""
    return (f"{rollout.completed} completed · {rollout.failed} failed · {rollout.in_flight} in flight"
            f" · {rollout.waiting} waiting · {rollout.cancelled} cancelled"
            + (f" · {rollout.end_reason}" if rollout.end_reason else ""))


def status_lines(rollout: RolloutProgressOut) -> dict[str, str]:
    """The rollout as one line per thing that changes, keyed by what it is about: the rollout (its state and
    totals), then each agent in plan order (its state, progress and activity)."""
    lines = {rollout.rollout_id: f"rollout {rollout.rollout_id}: {rollout.state} · {totals_text(rollout)}"}
    for agent in sorted(rollout.agents, key=lambda a: a.plan_order):
        lines[f"{rollout.rollout_id}/{agent.agent}"] = (f"rollout {short_id(rollout.rollout_id)} agent {agent.agent}: "
                                                        f"{agent.state} {fraction(agent):.0%} · {activity(agent)}")
    return lines
