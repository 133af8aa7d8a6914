"""Running the engine in the foreground with a live Progress view."""

from __future__ import annotations

import threading
from uuid import UUID

from rich.console import Console
from rich.live import Live

from adapters.progress_view import rollout_table
from engine.agent_upgrade import AgentUpgrade
from engine.ports import AgentGateway, Waiter
from engine.rollout import Rollout
from engine.runner import RolloutRunner
from engine.service import UpgradeService


def snapshot(service: UpgradeService, rollout_id: UUID) -> tuple[Rollout, dict[str, AgentUpgrade]]:
    """A rollout and each agent's upgrade, folded from the store now."""
    rollout = service.rollout(rollout_id)
    return rollout, {a.name: service.upgrade(a.upgrade_id) for a in rollout.plan.agents}


def run_in_foreground(service: UpgradeService, gateway: AgentGateway, waiter: Waiter, rollout_id: UUID,
                      console: Console, *, refresh_seconds: float = 0.25) -> Rollout:
    """Drive a rollout to its end, redrawing the progress table while it runs."""
    outcome: list[Rollout] = []
    failure: list[BaseException] = []

    def drive() -> None:
        try:
            outcome.append(RolloutRunner(service, gateway, waiter).run(rollout_id))
        except BaseException as exc:
            failure.append(exc)

    engine = threading.Thread(target=drive, name="engine", daemon=True)
    engine.start()
    with Live(rollout_table(*snapshot(service, rollout_id)), console=console, refresh_per_second=8,
              transient=False) as live:
        while engine.is_alive():
            engine.join(refresh_seconds)
            live.update(rollout_table(*snapshot(service, rollout_id)))
    if failure:
        raise failure[0]
    return outcome[0]
