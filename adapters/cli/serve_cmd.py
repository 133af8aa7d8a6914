"""``dma-upgrade serve`` (the engine process) and ``dma-upgrade recover`` (what it would resume)."""

from __future__ import annotations

import signal
import threading
from typing import Annotated

import typer
from rich.table import Table

from adapters.cli.context import RealWaiter, gateway_for, out, session
from adapters.cli.errors import reports_errors
from adapters.engine_process import EngineProcess, ProjectionIndex, planned_resumptions


@reports_errors
def serve(ctx: typer.Context,
          poll_seconds: Annotated[float, typer.Option(help="how often to look for new work")] = 1.0) -> None:
    """Run the engine: resume every unfinished rollout, start new ones, fire scheduled starts."""
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    with session(ctx) as s:
        gateway = gateway_for(s.container.settings, s.service)
        s.service.gateway = gateway
        for rollout, resumptions in planned_resumptions(s.service):
            out.print(f"resuming rollout {rollout.plan.rollout_id} ({rollout.state.value}, "
                      f"{len(resumptions)} unfinished agents)")
        out.print(f"engine serving {s.container.settings.resolved_database_url.split('@')[-1]}; Ctrl-C stops it")
        index = ProjectionIndex(s.container.projections, s.container.engine)
        EngineProcess(s.service, gateway, RealWaiter(), poll_seconds=poll_seconds, index=index).serve(stop)


@reports_errors
def recover(ctx: typer.Context,
            dry_run: Annotated[bool, typer.Option("--dry-run", help="only list what would be resumed")] = False,
            ) -> None:
    """List every unfinished rollout and agent upgrade and the state each would resume from."""
    if not dry_run:
        raise typer.BadParameter("recovery happens when `dma-upgrade serve` starts; use --dry-run to preview it")
    with session(ctx) as s:
        plans = planned_resumptions(s.service)
    if not plans:
        out.print("nothing to resume")
        return
    table = Table("rollout", "rollout state", "agent", "would", title="Recovery plan (dry run)",
                  title_justify="left")
    for rollout, resumptions in plans:
        if not resumptions:
            table.add_row(str(rollout.plan.rollout_id), rollout.state.value, "", "start its agents")
        for r in resumptions:
            table.add_row(str(r.rollout_id), rollout.state.value, r.agent, r.describe())
    out.print(table)
