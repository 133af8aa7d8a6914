"""Live Progress views: redrawing the progress table while a rollout runs here or on a server."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from uuid import UUID

from rich.console import Console, RenderableType
from rich.live import Live

from dma_upgrade.adapters.api.models import RolloutProgressOut
from dma_upgrade.adapters.bootstrap import Container
from dma_upgrade.adapters.read.progress_queries import current_progress
from dma_upgrade.adapters.read.progress_view import progress_table
from dma_upgrade.adapters.runtime.engine_process import ACTIVE, engine_actor
from dma_upgrade.adapters.runtime.leased_work import OUTAGES, Heartbeat, run_leased
from dma_upgrade.adapters.runtime.ports import Waiter
from dma_upgrade.adapters.runtime.rollout_runner import RolloutRunner
from dma_upgrade.adapters.sql.leases import ROLLOUT, SqlLeases
from dma_upgrade.engine.ports import AgentGateway
from dma_upgrade.engine.rollout import Rollout
from dma_upgrade.engine.service import UpgradeService
from dma_upgrade.projections.tables import Row


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
    """Drive a rollout to its end under its lease, as ``serve`` would, redrawing the progress table while it runs.

    This process is an engine while it drives (``dma-upgrade engines`` lists it; its events carry its engine
    identity as actor). When another engine process holds the rollout's lease already, or takes it over, this
    one follows the rollout's progress until it ends instead: one driver per rollout, always."""
    leases = SqlLeases(container.engine, container.clock, seconds=container.settings.lease_seconds)
    stop = threading.Event()
    failure: list[BaseException] = []

    def drive() -> None:
        try:
            leases.announce()
            claimed = leases.claim(ROLLOUT, [rollout_id])
            if not claimed:
                return  # another engine process drives it
            lease = claimed[0]
            runner = RolloutRunner(service, gateway, waiter, actor=engine_actor(leases.owner), stopping=stop)

            def run_to_the_end() -> None:
                runner.run(rollout_id, lease)
                leases.forget_rollout(rollout_id)

            run_leased(leases, lease, run_to_the_end, f"rollout {rollout_id}", failure.append)
        except BaseException as exc:
            failure.append(exc)

    def frames() -> Iterator[RenderableType]:
        while True:
            yield progress_table(*current_progress(container, rollout_id)[0])
            if not engine.is_alive() and (failure or service.rollout(rollout_id).state not in ACTIVE):
                return
            engine.join(refresh_seconds)
            if not engine.is_alive():
                stop.wait(refresh_seconds)  # another engine drives it: follow until it ends

    heartbeat = threading.Thread(target=Heartbeat(leases, leases.seconds / 4).serve, args=(stop,),
                                 name="heartbeat", daemon=True)
    engine = threading.Thread(target=drive, name="engine", daemon=True)
    heartbeat.start()
    engine.start()
    try:
        show_live(console, frames())
    finally:
        stop.set()
        engine.join(timeout=10)
        with contextlib.suppress(*OUTAGES):
            leases.release_all()
    if failure:
        raise failure[0]
    return service.rollout(rollout_id)
