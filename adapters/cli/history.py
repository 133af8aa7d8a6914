"""``dma-upgrade history``: every package ever uploaded, and each agent's VersionHistory.txt."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from adapters.cli.backend import open_backend
from adapters.cli.context import out
from adapters.cli.errors import reports_errors

app = typer.Typer(no_args_is_help=True, help="Upgrade history, from the package history projection.")


@app.command("packages")
@reports_errors
def packages(ctx: typer.Context) -> None:
    """Every package ever uploaded, with its status and every rollout that used it."""
    with open_backend(ctx) as backend:
        history = backend.package_history()
    table = Table("sha256", "version", "kind", "size", "uploaded by", "uploaded at", "status", "rollouts")
    for package in history:
        rollouts = "\n".join(f"{r.rollout_id[:8]} {'upload only ' if r.upload_only else ''}{r.outcome}"
                             for r in package.rollouts)
        table.add_row(package.sha256[:12], package.version, package.kind, str(package.size), package.uploaded_by,
                      f"{package.uploaded_at:%Y-%m-%d %H:%M:%S}", package.status, rollouts)
    out.print(table)


@app.command("agent")
@reports_errors
def agent(ctx: typer.Context, name: Annotated[str, typer.Argument(help="the agent")]) -> None:
    """One agent's version history, as its VersionHistory.txt would list it (``time;version``)."""
    with open_backend(ctx) as backend:
        lines = backend.version_history(name)
    for line in lines:
        out.print(f"{line.recorded_at:%Y-%m-%d %H:%M:%S};{line.version}")
