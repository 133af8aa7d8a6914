"""How errors reach a person on the command line: one line on stderr and an exit code from one table."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import sqlalchemy as sa
import typer
from rich.console import Console

from dma_upgrade.adapters.sql.database import first_line
from dma_upgrade.engine.errors import (
    ConcurrencyConflict,
    Conflict,
    DmaUpgradeError,
    EventStoreError,
    InvalidInput,
    InvalidTransition,
    NotFound,
    SchemaNotMigrated,
    StoreUnavailable,
)


class NotAuthorised(DmaUpgradeError):
    """The API server refused the token (HTTP 401) or what its role may do (HTTP 403)."""


class ServerUnreachable(DmaUpgradeError):
    """The API server named by ``--server`` could not be reached."""


class ServerRefusal(DmaUpgradeError):
    """An error the API server answered with; ``kind`` is the product error it stands for."""

    def __init__(self, message: str, kind: type[DmaUpgradeError]) -> None:
        super().__init__(message)
        self.kind = kind


EXIT_CODES: list[tuple[type[DmaUpgradeError], int]] = [
    (InvalidInput, 2),
    (NotFound, 3),
    (Conflict, 4),
    (ConcurrencyConflict, 4),
    (InvalidTransition, 5),
    (StoreUnavailable, 6),
    (SchemaNotMigrated, 7),
    (EventStoreError, 8),
    (ServerUnreachable, 6),
    (NotAuthorised, 10),
    (DmaUpgradeError, 1),
]
"""First match wins; exit code 1 is also what a failed audit verification returns. Bad input (2) includes
a malformed or unsupported database URL, an in-memory SQLite one and an invalid ``DMA_UPGRADE_ACTOR``;
an unavailable store (6), a database file that is no SQLite database and a data directory that cannot be
used; a damaged store (8), any other database error among them. With ``--server``, an answer of the API
maps back through the same table (404 → 3, 409 → 4 or 5, 422 → 2, 503 → 6), a server that cannot be
reached is 6, and a missing, wrong or too weak token (401, 403) is 10."""

stderr = Console(stderr=True, highlight=False, soft_wrap=True)

P = ParamSpec("P")
R = TypeVar("R")


def exit_code_for(error: DmaUpgradeError) -> int:
    kind = error.kind if isinstance(error, ServerRefusal) else type(error)
    return next(code for cls, code in EXIT_CODES if issubclass(kind, cls))


def fail(message: str, code: int) -> typer.Exit:
    """Print ``message`` as one error line and return the exit to raise."""
    stderr.print(f"error: {message}", markup=False)
    return typer.Exit(code)


def reports_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Turn the product's errors into one line and an exit code, never a traceback."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except DmaUpgradeError as error:
            raise fail(str(error), exit_code_for(error)) from None
        except sa.exc.OperationalError as error:
            reason = first_line(error)
            raise fail(f"database error: {reason}", exit_code_for(StoreUnavailable())) from None
        except sa.exc.DatabaseError as error:  # e.g. a damaged SQLite file: the store itself is wrong
            reason = first_line(error)
            raise fail(f"database error: {reason}", exit_code_for(EventStoreError())) from None

    return wrapper
