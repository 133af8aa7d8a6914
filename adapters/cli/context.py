"""What every command needs: the wired services for the database the global options chose."""

from __future__ import annotations

import contextlib
import functools
import os
import stat
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ParamSpec, TypeVar, cast

import typer

from dma_upgrade.adapters.bootstrap import App, bootstrap
from dma_upgrade.adapters.cli.console import console
from dma_upgrade.adapters.cli.errors import fail, stderr
from dma_upgrade.adapters.errors import ProjectionStopped
from dma_upgrade.adapters.private_files import PRIVATE_DIRECTORY, private_directory
from dma_upgrade.adapters.settings import Settings
from dma_upgrade.engine.actors import check_actor_name
from dma_upgrade.engine.errors import StoreUnavailable

out = console()

P = ParamSpec("P")
R = TypeVar("R")


def actor() -> str:
    """Who runs this command: ``DMA_UPGRADE_ACTOR``, else the login name (``USER``), else ``cli``; ``InvalidInput``
    when the chosen name is not a valid actor name (``check_actor_name``)."""
    for variable in ("DMA_UPGRADE_ACTOR", "USER"):
        name = os.environ.get(variable)
        if name:
            return check_actor_name(name, what=f"actor name in {variable}")
    return "cli"


@dataclass(frozen=True)
class Server:
    """The API server the global options ``--server`` and ``--token`` point the command at."""

    url: str
    token: str | None
    given_as: str
    """How the server was named (``--server`` or ``DMA_UPGRADE_SERVER``), for messages."""


_SERVER = "dma_upgrade.server"


def use_server(ctx: typer.Context, server: Server) -> None:
    """Make every command of this invocation work through ``server``'s API."""
    ctx.meta[_SERVER] = server


def server_of(ctx: typer.Context) -> Server | None:
    """The API server this invocation works through, or None for the local database."""
    server: Server | None = ctx.meta.get(_SERVER)
    return server


def refuse_server(ctx: typer.Context) -> None:
    """Exit 2 with one line if a server was given to a command that only works on the local database."""
    server = server_of(ctx)
    if server is not None:
        raise fail(f"`dma-upgrade {_command_name(ctx)}` works on this machine only, not through an API "
                   f"server: run it without {server.given_as}", 2)


def _command_name(ctx: typer.Context) -> str:
    """The command's words after the program's name (a group's callback adds the command it will run)."""
    words = ctx.command_path.removeprefix(ctx.find_root().command_path).split()
    return " ".join([*words, ctx.invoked_subcommand] if ctx.invoked_subcommand else words)


def local_only(command: Callable[P, R]) -> Callable[P, R]:
    """A command that refuses ``--server`` (it needs this machine: its database, files or processes).

    The command takes its context as ``ctx: typer.Context`` (Typer passes every parameter by keyword).
    """

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        refuse_server(cast(typer.Context, kwargs["ctx"]))
        return command(*args, **kwargs)

    return wrapper


@contextlib.contextmanager
def session(ctx: typer.Context, *, stopping: threading.Event | None = None, metrics: bool = False) -> Iterator[App]:
    """The process wired on the configured database for one command (``bootstrap``), closed afterwards;
    ``stopping`` is the process's shutdown event, ``metrics`` counts what it appends (``serve``)."""
    settings: Settings = ctx.obj
    private_data_dir(settings.data_dir)
    app = bootstrap(settings, stopping=stopping, metrics=metrics)
    try:
        yield app
    finally:
        app.close()


def private_data_dir(path: Path) -> None:
    """Make the data directory (the embedded database, packages, API tokens) its owner's alone: create it 0700, or
    tighten an existing one this user owns to 0700. One shared by design (sticky, like /tmp) or owned by someone
    else is left as it is, with a warning (the database files in it are 0600 all the same)."""
    try:
        private_directory(path)
        status = path.stat()
        if not stat.S_ISDIR(status.st_mode):
            raise StoreUnavailable(f"cannot use the data directory {path}: it is not a directory")
        mode = stat.S_IMODE(status.st_mode)
        if not mode & ~PRIVATE_DIRECTORY:
            return
        if status.st_uid == os.geteuid() and not mode & stat.S_ISVTX:
            path.chmod(PRIVATE_DIRECTORY)
            return
    except OSError as error:
        raise StoreUnavailable(f"cannot use the data directory {path}: {error.strerror}") from None
    stderr.print(f"warning: the data directory {path} is open to other users (mode {mode:o}) and shared or not this "
                 f"user's, so it is left as it is: give dma-upgrade a directory of its own (DMA_UPGRADE_DATA_DIR)",
                 markup=False)


def caught_up(app: App, projection: str) -> None:
    """The one-shot catch-up of a command that is the only process on the local database, before it reads
    ``projection``: a stopped projection is warned about, and the read then shows it as it is, with its lag."""
    try:
        app.projections.catch_up([projection])
    except ProjectionStopped as stopped:
        stderr.print(f"warning: {stopped}", markup=False)
