"""Live Progress views: redrawing the progress table while a rollout runs here or on a server."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from uuid import UUID

from rich.console import Console, RenderableType
from rich.live import Live

from dma_upgrade.adapters.bootstrap import App
from dma_upgrade.adapters.cli.context import caught_up
from dma_upgrade.adapters.read.progress_queries import PROGRESS, current_progress
from dma_upgrade.adapters.read.progress_view import progress_table
from dma_upgrade.adapters.runtime.engine_process import engine_actor
from dma_upgrade.adapters.runtime.leased_work import OUTAGES, Heartbeat, run_leased
from dma_upgrade.adapters.shapes.models import RolloutProgressOut
from dma_upgrade.adapters.sql.leases import ROLLOUT
from dma_upgrade.engine.rollout import ACTIVE_STATES, Rollout


def show_live(console: Console, frames: Iterator[RenderableType]) -> None:
    """Draw each frame over the previous one until the frames run out (the last one stays on screen)."""
    with Live(next(frames), console=console, refresh_per_second=8, transient=False) as live:
        for frame in frames:
            live.update(frame)
    if not console.is_terminal:
        console.line()  # off a terminal, Live prints only the last frame, without ending its line


def run_in_foreground(app: App, rollout_id: UUID, console: Console, *, refresh_seconds: float = 0.25) -> Rollout:
    """Drive a rollout to its end under its lease, as ``serve`` would, redrawing the progress table while it runs.

    This process is an engine while it drives (``dma-upgrade engines`` lists it; its events carry its engine
    identity as actor). When another engine process holds the rollout's lease already, or takes it over, this
    one follows the rollout's progress until it ends instead: one driver per rollout, always."""
    leases = app.leases()
    service = app.service
    stop = threading.Event()
    failure: list[BaseException] = []

    def drive() -> None:
        try:
            leases.announce()
            claimed = leases.claim(ROLLOUT, [rollout_id])
            if not claimed:
                return  # another engine process drives it
            lease = claimed[0]
            runner = app.runner(actor=engine_actor(leases.owner), stopping=stop)

            def run_to_the_end() -> None:
                runner.run(rollout_id, lease)
                leases.forget_rollout(rollout_id)

            run_leased(leases, lease, run_to_the_end, f"rollout {rollout_id}", failure.append)
        except BaseException as exc:
            failure.append(exc)

    def frames() -> Iterator[RenderableType]:
        while True:
            caught_up(app, PROGRESS)  # this command is the only process: keeping its read model up is its job
            [(rollout, agents)] = current_progress(app, rollout_id).value
            yield progress_table(RolloutProgressOut.of(rollout, agents))
            if not engine.is_alive() and (failure or service.rollout(rollout_id).state not in ACTIVE_STATES):
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
