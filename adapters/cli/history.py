"""``dma-upgrade history``: every package ever uploaded, and each agent's VersionHistory.txt."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from adapters.cli.context import out, session
from adapters.cli.errors import reports_errors
from adapters.sql.projection_runner import read_rows
from engine.errors import NotFound
from projections.package_history import PACKAGES, VERSION_HISTORY

app = typer.Typer(no_args_is_help=True, help="Upgrade history, from the package history projection.")


@app.command("packages")
@reports_errors
def packages(ctx: typer.Context) -> None:
    """Every package ever uploaded, with its status and every rollout that used it."""
    with session(ctx) as s:
        s.container.projections.catch_up(["package_history"])
        rows = sorted(read_rows(s.container.engine, PACKAGES), key=lambda r: r["uploaded_at"])
    table = Table("sha256", "version", "kind", "size", "uploaded by", "uploaded at", "status", "rollouts")
    for row in rows:
        rollouts = "\n".join(f"{r['rollout_id'][:8]} {'upload only ' if r['upload_only'] else ''}{r['outcome']}"
                             for r in row["rollouts"] or [])
        table.add_row(row["sha256"][:12], row["version"], row["kind"], str(row["size"]), row["uploaded_by"],
                      f"{row['uploaded_at']:%Y-%m-%d %H:%M:%S}", row["status"], rollouts)
    out.print(table)


@app.command("agent")
@reports_errors
def agent(ctx: typer.Context, name: Annotated[str, typer.Argument(help="the agent")]) -> None:
    """One agent's version history, as its VersionHistory.txt would list it (``time;version``)."""
    with session(ctx) as s:
        s.container.projections.catch_up(["package_history"])
        rows = read_rows(s.container.engine, VERSION_HISTORY, agent=name)
    if not rows:
        raise NotFound(f"unknown agent {name!r}")
    for row in sorted(rows, key=lambda r: r["seq"]):
        out.print(f"{row['recorded_at']:%Y-%m-%d %H:%M:%S};{row['version']}")
