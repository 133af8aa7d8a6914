"""How errors reach a person on the command line: one line on stderr and the exit code of its kind in the one
table (``adapters/errors.py``), which the API answers by too.

Bad input (2) includes a malformed or unsupported database URL, an in-memory SQLite one and an invalid
``DMA_UPGRADE_ACTOR``; an unavailable store (6), a database file that is no SQLite database and a data directory
that cannot be used; a damaged store (8), any other database error among them. With ``--server``, an error answer
of the API exits with the code of the kind it names (404 → 3, 409 → 4 or 5, 422 → 2, 503 → 6), a server that
cannot be reached is 6, and a missing, wrong or too weak token (401, 403) is 10.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import sqlalchemy as sa
import typer

from dma_upgrade.adapters.cli.console import console
from dma_upgrade.adapters.errors import STORE_ERROR, UNAVAILABLE, outcome_of
from dma_upgrade.adapters.sql.database import first_line
from dma_upgrade.engine.errors import DmaUpgradeError

stderr = console(stderr=True)

P = ParamSpec("P")
R = TypeVar("R")


def exit_code_for(error: DmaUpgradeError) -> int:
    """The exit code of ``error``'s kind."""
    return outcome_of(error).exit_code


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
            raise fail(f"database error: {reason}", UNAVAILABLE.exit_code) from None
        except sa.exc.DatabaseError as error:  # e.g. a damaged SQLite file: the store itself is wrong
            reason = first_line(error)
            raise fail(f"database error: {reason}", STORE_ERROR.exit_code) from None

    return wrapper
