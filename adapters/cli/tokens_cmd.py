"""``dma-upgrade tokens``: the API's bearer tokens (stored hashed; a token is shown once, when made).

A token file that cannot be read or written (a folder, no permission, not a token file) is one line and exit 6,
as the API answers 503 for it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from rich.text import Text

from dma_upgrade.adapters.access.tokens import Role, TokenFile
from dma_upgrade.adapters.cli.context import out
from dma_upgrade.adapters.cli.errors import reports_errors
from dma_upgrade.adapters.cli.tables import print_table
from dma_upgrade.adapters.settings import Settings
from dma_upgrade.engine.errors import StoreUnavailable

app = typer.Typer(no_args_is_help=True, help="API tokens: viewer (read), operator (run rollouts), admin (settings).")


@contextmanager
def _tokens(ctx: typer.Context) -> Iterator[TokenFile]:
    """The configured token file; a failure to change it (its folder cannot be written) as ``StoreUnavailable``."""
    settings: Settings = ctx.obj
    tokens = TokenFile(settings.resolved_tokens_file)
    try:
        yield tokens
    except OSError as error:
        raise StoreUnavailable(f"cannot change {tokens.path}: {error.strerror or error}") from None


@app.command("add")
@reports_errors
def add(ctx: typer.Context, name: Annotated[str, typer.Argument(help="who the token is for (the actor on events)")],
        role: Annotated[str, typer.Option(help="viewer, operator or admin")] = "viewer") -> None:
    """Make a token and print it (only its SHA-256 is kept)."""
    with _tokens(ctx) as tokens:
        token = tokens.add(name, Role.parse(role))
    out.print(token, markup=False)
    typer.echo(f"token for {name} ({Role.parse(role).label}) added to {tokens.path}; it is not shown again",
               err=True)


@app.command("list")
@reports_errors
def list_tokens(ctx: typer.Context) -> None:
    """Who has a token, and with which role."""
    with _tokens(ctx) as tokens:
        rows = [(Text(p.name), p.role.label) for p in tokens.principals()]  # a name is text, never markup
    print_table(("name", "role"), rows)


@app.command("revoke")
@reports_errors
def revoke(ctx: typer.Context, name: Annotated[str, typer.Argument()]) -> None:
    """Remove a token: its calls answer 401 from now on."""
    with _tokens(ctx) as tokens:
        tokens.revoke(name)
    out.print(f"token {name} revoked")
