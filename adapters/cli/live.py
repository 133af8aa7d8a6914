"""Running the engine in the foreground with a live Progress view drawn from the progress projection."""

from __future__ import annotations

import threading
from uuid import UUID

from rich.console import Console, RenderableType
from rich.live import Live

from adapters.bootstrap import Container
from adapters.progress_queries import current_progress
from adapters.progress_view import progress_table
from engine.ports import AgentGateway, Waiter
from engine.rollout import Rollout
from engine.runner import RolloutRunner
from engine.service import UpgradeService


def run_in_foreground(container: Container, service: UpgradeService, gateway: AgentGateway, waiter: Waiter,
                      rollout_id: UUID, console: Console, *, refresh_seconds: float = 0.25) -> Rollout:
    """Drive a rollout to its end, redrawing the progress table while it runs."""
    outcome: list[Rollout] = []
    failure: list[BaseException] = []

    def drive() -> None:
        try:
            outcome.append(RolloutRunner(service, gateway, waiter).run(rollout_id))
        except BaseException as exc:
            failure.append(exc)

    def view() -> RenderableType:
        return progress_table(*current_progress(container, rollout_id)[0])

    engine = threading.Thread(target=drive, name="engine", daemon=True)
    engine.start()
    with Live(view(), console=console, refresh_per_second=8, transient=False) as live:
        while engine.is_alive():
            engine.join(refresh_seconds)
            live.update(view())
    if failure:
        raise failure[0]
    return outcome[0]
