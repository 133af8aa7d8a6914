"""``dma-upgrade upgrade path``: the upgrade-path advisor."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from dma_upgrade.adapters.cli.backend import open_backend
from dma_upgrade.adapters.cli.context import out
from dma_upgrade.adapters.cli.errors import reports_errors
from dma_upgrade.adapters.cli.output import JsonAlias, Output, OutputFormat, print_json, wants_json
from dma_upgrade.adapters.shapes.paths import PathOut
from dma_upgrade.engine.path_advice import PathQuery


@reports_errors
def path(ctx: typer.Context,
         to: Annotated[str, typer.Option("--to", help="the version to reach, e.g. 10.5.0.0(CU2)-15000")],
         source: Annotated[str | None, typer.Option("--from", help="the version to start from")] = None,
         agent: Annotated[str | None, typer.Option(help="start from this agent's version")] = None,
         cluster: Annotated[str | None, typer.Option(help="start from the versions of this cluster's agents")] = None,
         output: Output = OutputFormat.TABLE, json_alias: JsonAlias = False,
         ) -> None:
    """The chain of versions to install to reach --to by the documented upgrade paths, marking which uploaded
    packages cover each hop (give exactly one of --from, --agent or --cluster)."""
    with open_backend(ctx) as backend:
        paths = backend.upgrade_path(PathQuery(target=to, source=source, agent=agent, cluster=cluster))
    if wants_json(output, json_alias):
        print_json(paths)
        return
    for advice in paths:
        show_path(advice)


def show_path(advice: PathOut) -> None:
    """One path: a table of hops with the packages covering each, or why there is none."""
    who = f" ({', '.join(advice.agents)})" if advice.agents else ""
    if advice.refused is not None:
        out.print(Text(f"from {advice.current}{who}: {advice.refused}", style="red"))
        return
    how = "direct" if advice.direct else f"{len(advice.hops)} hops"
    table = Table("#", "install", "why", "uploaded packages", title=f"from {advice.current}{who} to {advice.target}: "
                  f"{how}", title_justify="left")
    for number, hop in enumerate(advice.hops, start=1):
        packages = ", ".join(f"{p.file_name} ({p.status})" for p in hop.packages) or "none uploaded"
        table.add_row(str(number), hop.versions, "; ".join(hop.rules) or "the target", packages)
    out.print(table)
