"""``dma-upgrade tokens``: the API's bearer tokens (stored hashed; a token is shown once, when made)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from adapters.api.auth import Role, TokenFile
from adapters.cli.context import out
from adapters.cli.errors import reports_errors
from adapters.settings import Settings

app = typer.Typer(no_args_is_help=True, help="API tokens: viewer (read), operator (run rollouts), admin (settings).")


def _tokens(ctx: typer.Context) -> TokenFile:
    settings: Settings = ctx.obj
    return TokenFile(settings.resolved_tokens_file)


@app.command("add")
@reports_errors
def add(ctx: typer.Context, name: Annotated[str, typer.Argument(help="who the token is for (the actor on events)")],
        role: Annotated[str, typer.Option(help="viewer, operator or admin")] = "viewer") -> None:
    """Make a token and print it (only its SHA-256 is kept)."""
    tokens = _tokens(ctx)
    token = tokens.add(name, Role.parse(role))
    out.print(token, markup=False)
    typer.echo(f"token for {name} ({Role.parse(role).label}) added to {tokens.path}; it is not shown again",
               err=True)


@app.command("list")
@reports_errors
def list_tokens(ctx: typer.Context) -> None:
    """Who has a token, and with which role."""
    table = Table("name", "role")
    for principal in _tokens(ctx).principals():
        table.add_row(principal.name, principal.role.label)
    out.print(table)


@app.command("revoke")
@reports_errors
def revoke(ctx: typer.Context, name: Annotated[str, typer.Argument()]) -> None:
    """Remove a token: its calls answer 401 from now on."""
    _tokens(ctx).revoke(name)
    out.print(f"token {name} revoked")
