"""Rendering rollouts for people: a live table with a bar per agent, and the end-of-run summary."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from engine.agent_upgrade import AgentUpgrade
from engine.rollout import Rollout
from engine.upgrade_machine import UpgradeState

_STYLE = {UpgradeState.COMPLETED: "green", UpgradeState.FAILED: "red", UpgradeState.CANCELLED: "yellow"}
BAR_WIDTH = 24


def upgrade_fraction(upgrade: AgentUpgrade) -> float:
    """How far one agent's upgrade is, counting install phases inside the install step."""
    if upgrade.scheduled is None:
        return 0.0
    if upgrade.state is UpgradeState.COMPLETED:
        return 1.0
    steps = upgrade.plan.steps
    done = float(len(upgrade.done_steps))
    if upgrade.install_phase is not None and upgrade.phase_progress is not None:
        done += upgrade.phase_progress
    return min(done / (len(steps) + 1), 1.0)


def _bar(fraction: float) -> str:
    filled = round(fraction * BAR_WIDTH)
    return "█" * filled + "░" * (BAR_WIDTH - filled)


def _activity(upgrade: AgentUpgrade) -> str:
    if upgrade.state is UpgradeState.FAILED:
        return upgrade.last_error or "failed"
    if upgrade.state is UpgradeState.COMPLETED:
        return "needs a manual start" if upgrade.manual_start_needed else "done"
    if upgrade.install_phase is not None:
        return f"Installing: {upgrade.install_phase}"
    if upgrade.step_in_progress is not None:
        return f"{upgrade.step_in_progress.value.replace('_', ' ')} (attempt "\
               f"{upgrade.attempts[upgrade.step_in_progress]})"
    return "waiting"


def rollout_table(rollout: Rollout, upgrades: dict[str, AgentUpgrade]) -> RenderableType:
    """The Progress tab of one rollout: a row and a bar per agent."""
    plan = rollout.plan
    table = Table(title=f"Rollout {plan.rollout_id} · {plan.package_version} · {rollout.state.value}",
                  title_justify="left")
    for column in ("agent", "role", "state", "progress", "activity"):
        table.add_column(column)
    for agent in plan.agents:
        upgrade = upgrades[agent.name]
        style = _STYLE.get(upgrade.state, "cyan")
        table.add_row(agent.name, agent.failover_role.value if agent.failover_role else "",
                      Text(upgrade.state.value, style=style),
                      Text(f"{_bar(upgrade_fraction(upgrade))} {upgrade_fraction(upgrade):4.0%}", style=style),
                      _activity(upgrade))
    done = sum(u.state is UpgradeState.COMPLETED for u in upgrades.values())
    failed = sum(u.state is UpgradeState.FAILED for u in upgrades.values())
    footer = Text(f"{done} completed · {failed} failed · {len(upgrades) - done - failed} to go")
    return Group(table, footer)
