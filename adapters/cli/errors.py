"""How errors reach a person on the command line: one line on stderr and an exit code from one table."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import sqlalchemy as sa
import typer
from rich.console import Console

from engine.errors import (
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

EXIT_CODES: list[tuple[type[DmaUpgradeError], int]] = [
    (InvalidInput, 2),
    (NotFound, 3),
    (Conflict, 4),
    (ConcurrencyConflict, 4),
    (InvalidTransition, 5),
    (StoreUnavailable, 6),
    (SchemaNotMigrated, 7),
    (EventStoreError, 8),
    (DmaUpgradeError, 1),
]
"""First match wins; exit code 1 is also what a failed audit verification returns."""

stderr = Console(stderr=True, highlight=False, soft_wrap=True)

P = ParamSpec("P")
R = TypeVar("R")


def exit_code_for(error: DmaUpgradeError) -> int:
    return next(code for cls, code in EXIT_CODES if isinstance(error, cls))


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
            reason = str(error.orig or error).strip().splitlines()[0]
            raise fail(f"database error: {reason}", exit_code_for(StoreUnavailable())) from None

    return wrapper
