"""How errors reach an API client: the status and kind of its row in the one table (``adapters/errors.py``, which
the CLI exits by too) and a JSON body naming the problem: ``{"error": KIND, "detail": MESSAGE}``.

Nothing is appended when any of these is returned: every command checks before it appends. A database error
that is no product error answers 422 (a value the database refused), 409 (a duplicate it refused) or 503.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import pydantic
import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from dma_upgrade.adapters.api.models import ErrorOut
from dma_upgrade.adapters.errors import (
    CONFLICT,
    INTERNAL_ERROR,
    INVALID_INPUT,
    KINDS,
    UNAVAILABLE,
    Outcome,
    for_status,
    outcome_of,
)
from dma_upgrade.adapters.sql.database import first_line
from dma_upgrade.engine.errors import DmaUpgradeError, describe_validation

_log = logging.getLogger(__name__)

_NOT_FROM_ROUTES = frozenset({405, 415, 500})
"""Statuses the routes do not document: the framework's (a wrong method or media type) and a bug's."""

ERROR_RESPONSES: dict[int | str, dict[str, object]] = {
    status: {"model": ErrorOut, "description": " or ".join(o.kind for o in KINDS if o.status == status),
             **({"headers": {"WWW-Authenticate": {"schema": {"type": "string"}, "description": "Bearer"}}}
                if status == 401 else {})}
    for status in dict.fromkeys(o.status for o in KINDS) if status not in _NOT_FROM_ROUTES
}
"""The documented error responses of every route behind a token (for the OpenAPI schema)."""


def error_response(outcome: Outcome, detail: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    """The answer of an error of kind ``outcome``."""
    return JSONResponse(ErrorOut(error=outcome.kind, detail=detail).model_dump(), status_code=outcome.status,
                        headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    """Map the product's errors, and the database's and the framework's, to the table."""

    async def product_error(_: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, DmaUpgradeError)
        return error_response(outcome_of(error), str(error))

    async def database_error(_: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, sa.exc.DatabaseError)
        reason = first_line(error)
        if isinstance(error, sa.exc.DataError):
            return error_response(INVALID_INPUT, f"the database refused a value: {reason}")
        if isinstance(error, sa.exc.IntegrityError):
            return error_response(CONFLICT, f"the database refused a duplicate: {reason}")
        _log.warning("database error: %s", reason)  # the driver's words name the database's host and port
        return error_response(UNAVAILABLE, "database unreachable: the server's log says why")

    async def validation_error(_: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, RequestValidationError | pydantic.ValidationError)
        return error_response(INVALID_INPUT, describe_validation(error.errors()))

    async def unexpected_error(_: Request, error: Exception) -> JSONResponse:
        return error_response(INTERNAL_ERROR, f"unexpected {type(error).__name__}; see the server log")

    async def http_error(_: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, StarletteHTTPException)
        outcome = for_status(error.status_code) or Outcome("error", error.status_code, INTERNAL_ERROR.exit_code)
        return error_response(outcome, str(error.detail), headers=error.headers)

    app.add_exception_handler(DmaUpgradeError, product_error)
    app.add_exception_handler(sa.exc.DatabaseError, database_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(pydantic.ValidationError, validation_error)  # a request turned into engine models
    app.add_exception_handler(Exception, unexpected_error)
