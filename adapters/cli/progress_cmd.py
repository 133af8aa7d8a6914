"""``dma-upgrade progress``, ``dma-upgrade projections`` and ``dma-upgrade engines``: the read side."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Annotated
from uuid import UUID

import typer
from rich.table import Table

from dma_upgrade.adapters.audit.export import parse_time
from dma_upgrade.adapters.cli.backend import Backend, noted, open_backend
from dma_upgrade.adapters.cli.context import local_only, out, session
from dma_upgrade.adapters.cli.errors import reports_errors
from dma_upgrade.adapters.cli.live import show_live
from dma_upgrade.adapters.cli.output import (
    JsonAlias,
    Output,
    OutputFormat,
    json_line,
    print_json,
    print_line,
    wants_json,
)
from dma_upgrade.adapters.cli.progress_bar import Quiet, progress_bar
from dma_upgrade.adapters.cli.tables import print_table
from dma_upgrade.adapters.cli.upgrade import EXIT_FAILED_ROLLOUT
from dma_upgrade.adapters.read.progress_view import progress_table, status_lines
from dma_upgrade.adapters.shapes.models import RolloutProgressOut
from dma_upgrade.engine.errors import InvalidInput
from dma_upgrade.engine.rollout import ENDED_STATES, RolloutState

FOLLOW_SECONDS = 0.5
"""How often ``progress --follow`` reads the progress again."""

projections_app = typer.Typer(no_args_is_help=True, help="The read models built from the events.")


@reports_errors
def progress(ctx: typer.Context,
             rollout: Annotated[UUID | None, typer.Argument(help="one rollout (default: all)")] = None,
             follow: Annotated[bool, typer.Option(help=(
                 "keep redrawing until the rollouts end (off a terminal: a line per change; with --output json: "
                 "JSON lines, a rollout's document each time it changes); exit 9 unless every one completed"))] = False,
             output: Output = OutputFormat.TABLE,
             json_alias: JsonAlias = False,
             as_of: Annotated[str | None, typer.Option(help="show it as it was at this time (ISO 8601)")] = None,
             at_position: Annotated[int | None, typer.Option(help="show it as it was at this position")] = None,
             ) -> None:
    """The Progress tab: each rollout with a row and a bar per agent."""
    past = as_of is not None or at_position is not None
    if past and rollout is None:
        raise InvalidInput("--as-of and --at-position need a ROLLOUT")
    if past and follow:
        raise InvalidInput("--follow shows the present; it cannot be combined with --as-of or --at-position")
    if as_of is not None and at_position is not None:
        raise InvalidInput("give --as-of or --at-position, not both")
    at_time = parse_time(as_of, "--as-of") if as_of is not None else None
    with open_backend(ctx) as backend:
        if rollout is not None and past:
            views = [backend.progress_at(rollout, at_time=at_time, at_position=at_position)]
        else:
            views = noted(backend.progress(rollout))
        as_json = wants_json(output, json_alias)
        if follow:
            _follow(_Following(backend, rollout, views), as_json=as_json)
        elif as_json:
            print_json(views)
        else:
            for view in views:
                out.print(progress_table(view))


@dataclass
class _Following:
    """The rollouts ``progress --follow`` shows (one, or all), polled until every one of them ended."""

    backend: Backend
    rollout: UUID | None
    views: list[RolloutProgressOut]
    """The latest progress of the rollouts followed."""

    def __iter__(self) -> Iterator[list[RolloutProgressOut]]:
        """The progress now, then every ``FOLLOW_SECONDS`` again, until every rollout followed ended."""
        while True:
            yield self.views
            if all(view.state in ENDED_STATES for view in self.views):
                return
            time.sleep(FOLLOW_SECONDS)
            self.views = self.backend.progress(self.rollout).value


def _follow(following: _Following, *, as_json: bool) -> None:
    """Show the rollouts until they end: as JSON lines, else redrawn on a terminal, else a line per change; then
    exit as ``upgrade start --wait`` does: 0 if every one completed, else ``EXIT_FAILED_ROLLOUT``."""
    if as_json:
        _print_json_changes(following)
    elif out.is_terminal:
        show_live(out, map(_stack, following))
    else:
        _print_changes(following)
    if any(view.state != RolloutState.COMPLETED for view in following.views):
        raise typer.Exit(EXIT_FAILED_ROLLOUT)


def _print_changes(polls: Iterable[list[RolloutProgressOut]]) -> None:
    """Print each line of ``status_lines`` when it first shows and whenever it changes."""
    for line in _changed(polls, status_lines):
        out.print(line, markup=False)


def _print_json_changes(polls: Iterable[list[RolloutProgressOut]]) -> None:
    """Print each rollout's document (``RolloutProgressOut``) as a line of JSON when it first shows and whenever
    it changes."""
    for line in _changed(polls, lambda view: {view.rollout_id: json_line(view)}):
        print_line(line)


def _changed(polls: Iterable[list[RolloutProgressOut]],
             lines: Callable[[RolloutProgressOut], dict[str, str]]) -> Iterator[str]:
    """Each of the ``lines`` of the views polled (by key) when it first shows and whenever it changes."""
    shown: dict[str, str] = {}
    for views in polls:
        for key, line in (item for view in views for item in lines(view).items()):
            if shown.get(key) != line:
                shown[key] = line
                yield line


def _stack(views: list[RolloutProgressOut]) -> Table:
    grid = Table.grid()
    for view in views:
        grid.add_row(progress_table(view))
    return grid


@projections_app.command("status")
@reports_errors
def status(ctx: typer.Context, output: Output = OutputFormat.TABLE, json_alias: JsonAlias = False) -> None:
    """Each projection's checkpoint and how far behind the head it is."""
    with open_backend(ctx) as backend:
        statuses = backend.projections()
    if wants_json(output, json_alias):
        print_json(statuses)
        return
    print_table(("projection", "checkpoint", "head", "lag (events)", "lag (s)", "stopped"),
                ((st.name, str(st.position), str(st.head), str(st.lag_events), f"{st.lag_seconds:.1f}",
                  f"at {st.error_position}: {st.error}" if st.error else "")
                 for st in statuses))


@projections_app.command("run")
@reports_errors
@local_only
def run(ctx: typer.Context,
        follow: Annotated[bool, typer.Option(help="keep following new events (polling)")] = False,
        poll_seconds: Annotated[float, typer.Option(help="how often to look for new events")] = 1.0) -> None:
    """Bring every projection up to the head of the log (and follow it with --follow)."""
    with session(ctx) as s:
        while True:
            applied = s.projections.catch_up()
            if not follow:
                out.print(", ".join(f"{name}: {count} events applied" for name, count in applied.items()))
                return
            time.sleep(poll_seconds)


@projections_app.command("rebuild")
@reports_errors
@local_only
def rebuild(ctx: typer.Context,
            name: Annotated[str | None, typer.Argument(help="one projection (default: all)")] = None,
            quiet: Quiet = False) -> None:
    """Empty a projection's tables and replay every event from position 0 (on a terminal, its progress is drawn
    on stderr)."""
    with session(ctx) as s:
        names = [name] if name else None
        if name is not None:
            s.projections.projection(name)
        with progress_bar("rebuilding", quiet=quiet) as reporter:
            applied = s.projections.rebuild(names, workers=os.cpu_count() or 1, reporter=reporter)
    out.print(", ".join(f"{n}: rebuilt from {count} events" for n, count in applied.items()))


@reports_errors
def engines(ctx: typer.Context, output: Output = OutputFormat.TABLE, json_alias: JsonAlias = False) -> None:
    """The engine processes sharing the database: the rollouts each runs, the upgrades it drives, its roles."""
    with open_backend(ctx) as backend:
        overview = backend.engines()
    if wants_json(output, json_alias):
        print_json(overview)
        return
    if not overview.engines:
        out.print("no engine process holds a lease: none is running (or none has been since the lease time)")
    else:
        print_table(("engine instance", "host", "pid", "rollouts", "upgrades", "roles", "lease expires"),
                    ((e.engine_instance, e.host, e.pid, "\n".join(e.rollouts) or "-", str(e.upgrades),
                      ", ".join(e.roles) or "-", e.lease_expires_at.strftime("%Y-%m-%d %H:%M:%S UTC"))
                     for e in overview.engines))
    if overview.upgrades_waiting:
        out.print(f"{overview.upgrades_waiting} handed-out upgrades wait for an engine to claim them")
