"""The ``dma-upgrade`` command line."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from dma_upgrade.adapters.cli import (
    agent_sim_cmd,
    agents,
    audit,
    history,
    packages,
    progress_cmd,
    serve_cmd,
    settings_cmd,
    tokens_cmd,
    upgrade,
    upgrade_path,
    verify_model_cmd,
)
from dma_upgrade.adapters.cli.context import Server, local_only, out, refuse_server, use_server
from dma_upgrade.adapters.cli.diagram import mermaid_diagram
from dma_upgrade.adapters.cli.errors import fail, reports_errors
from dma_upgrade.adapters.cli.progress_bar import Quiet, progress_bar
from dma_upgrade.adapters.settings import Settings
from dma_upgrade.adapters.sql.database import create_db_engine, describe, head_revision, migrate
from dma_upgrade.engine.upgrade_machine import TRANSITIONS

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Upgrade DataMiner Agents with a full audit trail, crash recovery and metrics.")
db_app = typer.Typer(no_args_is_help=True, help="The database schema.")


def _local_group(ctx: typer.Context) -> None:
    """A group of commands that only work on this machine."""
    refuse_server(ctx)


app.add_typer(db_app, name="db", callback=_local_group)
app.add_typer(audit.app, name="audit")
app.add_typer(agents.app, name="agents")
app.add_typer(packages.app, name="packages")
app.add_typer(upgrade.app, name="upgrade")
upgrade.app.command("path")(upgrade_path.path)
app.add_typer(settings_cmd.app, name="settings")
app.add_typer(progress_cmd.projections_app, name="projections")
app.command("progress")(progress_cmd.progress)
app.command("engines")(progress_cmd.engines)
app.add_typer(history.app, name="history")
app.add_typer(tokens_cmd.app, name="tokens", callback=_local_group)
app.command("serve")(local_only(serve_cmd.serve))
app.command("recover")(local_only(serve_cmd.recover))
app.command("agent-sim")(local_only(agent_sim_cmd.agent_sim))
app.command("verify-model")(local_only(verify_model_cmd.verify_model))


@app.callback()
def main(ctx: typer.Context,
         database_url: Annotated[str | None, typer.Option(
             "--database-url", envvar="DMA_UPGRADE_DATABASE_URL",
             help="sqlite:///FILE or postgresql+psycopg://... (default: an embedded SQLite file)")] = None,
         server: Annotated[str | None, typer.Option(
             "--server", envvar="DMA_UPGRADE_SERVER",
             help="work through the API of `dma-upgrade serve` at this URL, e.g. http://host:8600")] = None,
         token: Annotated[str | None, typer.Option(
             "--token", envvar="DMA_UPGRADE_TOKEN",
             help="the API bearer token for --server (from `dma-upgrade tokens add`)")] = None,
         ) -> None:
    """Global options."""
    ctx.obj = Settings(database_url=database_url) if database_url else Settings()
    if server:
        source = ctx.get_parameter_source("server")
        given_as = "DMA_UPGRADE_SERVER" if source is not None and source.name == "ENVIRONMENT" else "--server"
        if not server.startswith(("http://", "https://")):
            raise fail(f"{given_as} must be an http:// or https:// URL, got {server!r}", 2)
        use_server(ctx, Server(url=server.rstrip("/"), token=token, given_as=given_as))


@db_app.command("upgrade")
@reports_errors
def db_upgrade(ctx: typer.Context, quiet: Quiet = False) -> None:
    """Create or migrate the schema to the latest version (on a terminal, the migrations done of those to run are
    drawn on stderr)."""
    settings: Settings = ctx.obj
    engine = create_db_engine(settings.resolved_database_url)
    try:
        with progress_bar("migrating", quiet=quiet) as reporter:
            migrate(engine, reporter=reporter)
        out.print(f"database {describe(engine)} is at schema {head_revision()}")
    finally:
        engine.dispose()


@app.command("states")
@local_only
def states(
    ctx: typer.Context,
    mermaid: Annotated[bool, typer.Option("--mermaid", help="print a Mermaid diagram")] = False,
) -> None:
    """Show the agent-upgrade state machine (drawn from the table the engine runs)."""
    if mermaid:
        out.print(mermaid_diagram(), end="", markup=False)
        return
    table = Table("from", "trigger", "to", "when", title="Agent upgrade transitions")
    for row in TRANSITIONS:
        sources = row["source"] if isinstance(row["source"], list) else [row["source"]]
        when = " and ".join([*row.get("conditions", []), *(f"not {u}" for u in row.get("unless", []))])
        for source in sources:
            table.add_row(source, row["trigger"], row["dest"], when)
    out.print(table)


@app.command("demo")
@reports_errors
@local_only
def demo(ctx: typer.Context,
         data_dir: Annotated[Path | None, typer.Option(
             help="where the demo's fresh database goes (default: a new temporary folder)")] = None,
         speed: Annotated[float, typer.Option(help="step duration scale: 0 runs instantly")] = 1.0) -> None:
    """Upgrade a simulated 6-agent cluster (with a failover pair) end to end on a fresh database."""
    from dma_upgrade.adapters.cli.demo import run_demo

    target = data_dir or Path(tempfile.mkdtemp(prefix="dma-upgrade-demo-"))
    if (target / "dma-upgrade.db").exists():
        raise fail(f"{target} already holds a database: the demo needs a fresh folder", 2)
    if not run_demo(target, out, step_scale=speed):
        raise typer.Exit(1)

