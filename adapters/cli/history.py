"""``dma-upgrade history``: every package ever uploaded, and each agent's VersionHistory.txt."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from dma_upgrade.adapters.cli.backend import noted, open_backend
from dma_upgrade.adapters.cli.context import out
from dma_upgrade.adapters.cli.errors import reports_errors
from dma_upgrade.adapters.cli.output import JsonAlias, Output, OutputFormat, print_json, wants_json
from dma_upgrade.adapters.cli.packages import acceptance
from dma_upgrade.adapters.clock import short_id
from dma_upgrade.adapters.shapes.models import PackageRolloutOut

app = typer.Typer(no_args_is_help=True, help="Upgrade history, from the package history projection.")


@app.command("packages")
@reports_errors
def packages(ctx: typer.Context, output: Output = OutputFormat.TABLE, json_alias: JsonAlias = False) -> None:
    """Every package ever uploaded, with its status and every rollout that used it."""
    with open_backend(ctx) as backend:
        history = noted(backend.package_history())
    if wants_json(output, json_alias):
        print_json(history)
        return
    table = Table("sha256", "version", "kind", "size", "uploaded by", "uploaded at", "status", "rollouts",
                  "accepted by")
    for package in history:
        rollouts = "\n".join(_rollout_lines(r) for r in package.rollouts)
        table.add_row(package.sha256[:12], package.version, package.kind, str(package.size), package.uploaded_by,
                      f"{package.uploaded_at:%Y-%m-%d %H:%M:%S}", package.status, rollouts,
                      Text(acceptance(package.clusters)))
    out.print(table)


def _rollout_lines(rollout: PackageRolloutOut) -> str:
    """A rollout of a package: its outcome, then when and by whom it first used the package and was continued."""
    lines = [f"{short_id(rollout.rollout_id)} {'upload only ' if rollout.upload_only else ''}{rollout.outcome}"]
    if rollout.used_at is not None:
        agent = f" ({rollout.used_agent} began installing)" if rollout.used_agent else ""
        lines.append(f"  first used {rollout.used_at:%Y-%m-%d %H:%M:%S} by {rollout.used_by}{agent}")
    lines.extend(f"  continued {continued.at:%Y-%m-%d %H:%M:%S} by {continued.by}" for continued in rollout.continued)
    return "\n".join(lines)


@app.command("agent")
@reports_errors
def agent(ctx: typer.Context, name: Annotated[str, typer.Argument(help="the agent")],
          output: Output = OutputFormat.TABLE, json_alias: JsonAlias = False) -> None:
    """One agent's version history, as its VersionHistory.txt would list it (``time;version``)."""
    with open_backend(ctx) as backend:
        lines = noted(backend.version_history(name))
    if wants_json(output, json_alias):
        print_json(lines)
        return
    for line in lines:
        out.print(f"{line.recorded_at:%Y-%m-%d %H:%M:%S};{line.version}")
