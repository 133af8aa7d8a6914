"""``dma-upgrade settings``: system defaults (upgrade options, default failover policy)."""

from __future__ import annotations

from typing import Annotated

import typer

from dma_upgrade.adapters.cli.backend import open_backend
from dma_upgrade.adapters.cli.context import out
from dma_upgrade.adapters.cli.errors import reports_errors
from dma_upgrade.adapters.cli.output import JsonAlias, Output, OutputFormat, print_json, wants_json
from dma_upgrade.adapters.cli.tables import print_table

app = typer.Typer(no_args_is_help=True, help="System settings (each change is an event).")


@app.command("set")
@reports_errors
def set_setting(ctx: typer.Context, key: Annotated[str, typer.Argument()],
                value: Annotated[str, typer.Argument()]) -> None:
    """Set a setting, e.g. ``failover-default-policy backup-first`` or ``reboot on``."""
    with open_backend(ctx) as backend:
        backend.set_setting(key, value)
    out.print(f"{key} = {value}")


@app.command("list")
@reports_errors
def list_settings(ctx: typer.Context, output: Output = OutputFormat.TABLE, json_alias: JsonAlias = False) -> None:
    """Every setting with its current value (as JSON: the API's object of setting to value)."""
    with open_backend(ctx) as backend:
        settings = backend.settings()
    if wants_json(output, json_alias):
        print_json(settings)
        return
    print_table(("setting", "value"), settings.items())
