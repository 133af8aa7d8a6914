"""``dma-upgrade settings``: system defaults (upgrade options, default failover policy)."""

from __future__ import annotations

from typing import Annotated

import typer

from dma_upgrade.adapters.cli.backend import open_backend
from dma_upgrade.adapters.cli.context import out
from dma_upgrade.adapters.cli.errors import reports_errors
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
def list_settings(ctx: typer.Context) -> None:
    """Every setting with its current value."""
    with open_backend(ctx) as backend:
        settings = backend.settings()
    print_table(("setting", "value"), settings.items())
