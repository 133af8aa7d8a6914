"""Live Progress views: redrawing the progress table while a rollout runs here or on a server."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from uuid import UUID

from rich.console import Console, RenderableType
from rich.live import Live

from adapters.api.models import RolloutProgressOut
from adapters.bootstrap import Container
from adapters.progress_queries import current_progress
from adapters.progress_view import progress_table
from adapters.runtime.ports import Waiter
from adapters.runtime.rollout_runner import RolloutRunner
from engine.ports import AgentGateway
from engine.rollout import Rollout
from engine.service import UpgradeService
from projections.tables import Row


def rows_of(view: RolloutProgressOut) -> tuple[Row, list[Row]]:
    """A rollout's progress as the rows the Progress renderers take (the rollout, then its agents)."""
    return view.model_dump(exclude={"agents"}), [agent.model_dump() for agent in view.agents]


def show_live(console: Console, frames: Iterator[RenderableType]) -> None:
    """Draw each frame over the previous one until the frames run out (the last one stays on screen)."""
    with Live(next(frames), console=console, refresh_per_second=8, transient=False) as live:
        for frame in frames:
            live.update(frame)
    if not console.is_terminal:
        console.line()  # off a terminal, Live prints only the last frame, without ending its line


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

    def frames() -> Iterator[RenderableType]:
        while True:
            yield progress_table(*current_progress(container, rollout_id)[0])
            if not engine.is_alive():
                return
            engine.join(refresh_seconds)

    engine = threading.Thread(target=drive, name="engine", daemon=True)
    engine.start()
    show_live(console, frames())
    if failure:
        raise failure[0]
    return outcome[0]
