"""``dma-upgrade serve`` (the engine process) and ``dma-upgrade recover`` (what it would resume)."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from dma_upgrade.adapters.access.tokens import TokenFile
from dma_upgrade.adapters.cli.context import out, session
from dma_upgrade.adapters.cli.errors import fail, reports_errors
from dma_upgrade.adapters.cli.output import JsonAlias, Output, OutputFormat, print_json, wants_json
from dma_upgrade.adapters.metrics.chain import ChainWatch
from dma_upgrade.adapters.runtime.engine_process import (
    FOLLOWER_ROLE,
    ProjectionIndex,
    Resumption,
    planned_resumptions,
)
from dma_upgrade.adapters.runtime.leased_work import playing
from dma_upgrade.adapters.shapes.models import RecoveryOut
from dma_upgrade.adapters.sql.database import is_sqlite
from dma_upgrade.adapters.sql.projection_runner import ProjectionRunner
from dma_upgrade.adapters.sql.wakeups import PgListener

if TYPE_CHECKING:
    from datetime import datetime

    from dma_upgrade.adapters.api.serve import ApiServer
    from dma_upgrade.engine.rollout import Rollout


@reports_errors
def serve(ctx: typer.Context,
          poll_seconds: Annotated[float, typer.Option(help="how often to look for new work")] = 1.0,
          host: Annotated[str, typer.Option(help="address the API listens on")] = "127.0.0.1",
          port: Annotated[int, typer.Option(help="port of the API, /metrics and the progress page")] = 8600,
          api: Annotated[bool, typer.Option("--api/--no-api", help="serve the HTTP API")] = True,
          ) -> None:
    """Run the engine (resume unfinished rollouts, start new ones, fire scheduled starts) and the API."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    with session(ctx, stopping=stop, metrics=True) as app:
        settings = app.settings
        metrics = app.metrics
        assert metrics is not None
        for rollout, resumptions in planned_resumptions(app.service):
            out.print(f"resuming rollout {rollout.plan.rollout_id} ({rollout.state.value}, "
                      f"{len(resumptions)} unfinished agents)")
        server: ApiServer | None = None
        if api:
            # The web stack is imported here, not at the top: every other command starts without it. The API's
            # one entry point for the CLI (an allowed exception to their independence contract).
            from dma_upgrade.adapters.api.serve import start_api

            tokens = TokenFile(settings.resolved_tokens_file)
            if not tokens.principals():
                out.print(f"[yellow]warning: no API tokens in {tokens.path}: every route but /metrics, /healthz "
                          f"and /readyz answers 401; add one with `dma-upgrade tokens add NAME --role ROLE`[/]")
            try:
                server = start_api(app, tokens, metrics.registry, host=host, port=port)
            except (OSError, TimeoutError) as error:
                raise fail(f"{error}: choose another --port, or --no-api", 2) from None
            out.print(f"API, metrics and progress page on {server.url}")
        out.print(f"engine serving {settings.resolved_database_url.split('@')[-1]}; Ctrl-C stops it")
        leases = app.leases()
        follows = playing(leases, FOLLOWER_ROLE)
        follower = threading.Thread(target=_follow, args=(app.projections, metrics.chain, stop, poll_seconds,
                                                          follows), name="projections", daemon=True)
        follower.start()
        process = app.engine_process(poll_seconds=poll_seconds, leases=leases,
                                     index=ProjectionIndex(app.projections, app.engine, follows))
        metrics.with_engine(leases, process.upgrades_driving)
        listener = None if is_sqlite(app.engine) else PgListener(
            app.engine, [process.wakeup, process.drivers_wakeup])
        out.print(f"engine instance {leases.owner}")
        try:
            if listener is not None:
                listener.start()
            process.serve(stop)
        finally:
            stop.set()
            if listener is not None:
                listener.stop()
            follower.join(timeout=60)  # before the session closes the database under it
            if server is not None:
                server.stop()


def _follow(projections: ProjectionRunner, chain: ChainWatch, stop: threading.Event, poll_seconds: float,
            follows: Callable[[], bool]) -> None:
    """Keep every projection caught up (in the one engine process that ``follows`` them) and the hash chain
    verified (in each), for the page, readiness and metrics."""
    while not stop.wait(poll_seconds):
        with contextlib.suppress(Exception):  # a stopped projection reports itself in status and readiness
            if follows():
                projections.catch_up()
        with contextlib.suppress(Exception):  # a broken chain shows as a last verified position that stops
            chain.verify_new()


@reports_errors
def recover(ctx: typer.Context,
            dry_run: Annotated[bool, typer.Option("--dry-run", help="only list what would be resumed")] = False,
            output: Output = OutputFormat.TABLE, json_alias: JsonAlias = False,
            ) -> None:
    """List every unfinished rollout and agent upgrade and the state each would resume from (a rollout waiting for
    its scheduled start: when, or how long ago it came due)."""
    if not dry_run:
        raise typer.BadParameter("recovery happens when `dma-upgrade serve` starts; use --dry-run to preview it")
    with session(ctx) as app:
        plans = planned_resumptions(app.service)
        now = app.clock.now()
    if wants_json(output, json_alias):
        print_json(recovery_plan(plans, now))
        return
    if not plans:
        out.print("nothing to resume")
        return
    table = Table("rollout", "rollout state", "agent", "would", title="Recovery plan (dry run)",
                  title_justify="left")
    for row in recovery_plan(plans, now):
        table.add_row(row.rollout_id, row.rollout_state, row.agent or "", row.would)
    out.print(table)
    resumed = [r for _, resumptions in plans for r in resumptions]
    doubts = [(r, r.doubt) for r in resumed if r.doubt is not None]
    if doubts:
        in_doubt = Table("rollout", "agent", "step", "attempt", "reason", title="Steps in doubt (resolve with "
                         "`dma-upgrade upgrade resolve ROLLOUT AGENT --applied|--not-applied`)", title_justify="left")
        for r, doubt in doubts:
            in_doubt.add_row(str(r.rollout_id), r.agent, doubt.step, str(doubt.attempt), doubt.reason)
        out.print(in_doubt)
    awaiting = [r for r in resumed if r.awaiting_manual_start is not None]
    if awaiting:
        manual = Table("rollout", "agent", "start it with", title="Waiting for a manual start before the switch-over",
                       title_justify="left")
        for r in awaiting:
            manual.add_row(str(r.rollout_id), r.agent, f"dma-upgrade agents start {r.awaiting_manual_start}")
        out.print(manual)


def recovery_plan(plans: list[tuple[Rollout, list[Resumption]]], now: datetime) -> list[RecoveryOut]:
    """What a starting engine would do, a row per rollout waiting (to start, or to start its agents) and per
    agent upgrade it would resume."""
    from dma_upgrade.adapters.read.progress_view import scheduled_start  # only recover uses these two
    from dma_upgrade.engine.rollout import RolloutState

    rows = []
    for rollout, resumptions in plans:
        rollout_id, state, start_at = str(rollout.plan.rollout_id), rollout.state.value, rollout.plan.start_at
        if rollout.state is RolloutState.PLANNED and start_at is not None:
            rows.append(RecoveryOut(rollout_id=rollout_id, rollout_state=state, would=scheduled_start(start_at, now)))
        elif not resumptions:
            rows.append(RecoveryOut(rollout_id=rollout_id, rollout_state=state, would="start its agents"))
        rows.extend(RecoveryOut(rollout_id=str(r.rollout_id), rollout_state=state, agent=r.agent, would=r.describe(),
                                step_in_doubt=r.doubt.step if r.doubt is not None else None,
                                awaiting_manual_start=r.awaiting_manual_start) for r in resumptions)
    return rows
