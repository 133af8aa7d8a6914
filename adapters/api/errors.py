"""How errors reach an API client: a status code from one table (``STATUS_CODES`` in ``status_table.py``, which
the CLI client reads back too) and a JSON body naming the problem.

    status  error              raised for
    400     bad_request        a body that cannot be parsed at all (bytes that are not text, broken multipart)
    401     unauthorized       no bearer token, or one that is not configured
    403     forbidden          a token whose role may not do this (viewer < operator < admin)
    404     not_found          an unknown agent, cluster, package, rollout, projection or token
    409     conflict           a reused package, a busy cluster, an agent in two rollouts, a stale write
    409     illegal_transition a command the state machine does not allow now (pause a finished rollout)
    413     too_large          an upload over the configured limit
    422     invalid_input      a malformed version, option, time, anchor or package (hostile archive too),
                               or a request the schema or the engine's models refuse (naming each field)
    502     agent_failed       an agent did not answer or refused (adding one by address, a manual start)
    503     unavailable        the database cannot be reached or read, a projection is stopped, the token file is
                               broken, or the server is busy (every slot for calls that wait on agents, or for
                               uploads, is taken: ``adapters/api/limits.py``)
    503     schema_not_migrated the database has no schema (run `dma-upgrade db upgrade`)
    500     store_error        a stored event that cannot be read (a broken store, never bad input)
    500     internal_error     anything else (a bug: the server log has the traceback)

Nothing is appended when any of these is returned: every command checks before it appends.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import pydantic
import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from dma_upgrade.adapters.api.models import ErrorOut
from dma_upgrade.adapters.api.status_table import STATUS_CODES, status_for
from dma_upgrade.adapters.sql.database import first_line
from dma_upgrade.engine.errors import DmaUpgradeError

_log = logging.getLogger(__name__)

ERROR_RESPONSES: dict[int | str, dict[str, object]] = {
    400: {"model": ErrorOut, "description": "bad_request"},
    401: {"model": ErrorOut, "description": "unauthorized",
          "headers": {"WWW-Authenticate": {"schema": {"type": "string"}, "description": "Bearer"}}},
    403: {"model": ErrorOut, "description": "forbidden"},
    **{status: {"model": ErrorOut, "description": kind} for _, status, kind in STATUS_CODES if status != 500},
}
"""The documented error responses of every route behind a token (for the OpenAPI schema)."""



def error_response(status: int, kind: str, detail: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(ErrorOut(error=kind, detail=detail).model_dump(), status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    """Map the product's errors, and an unreachable database, to the table above."""

    async def product_error(_: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, DmaUpgradeError)
        status, kind = status_for(error)
        return error_response(status, kind, str(error))

    async def database_error(_: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, sa.exc.DatabaseError)
        reason = first_line(error)
        if isinstance(error, sa.exc.DataError):
            return error_response(422, "invalid_input", f"the database refused a value: {reason}")
        if isinstance(error, sa.exc.IntegrityError):
            return error_response(409, "conflict", f"the database refused a duplicate: {reason}")
        _log.warning("database error: %s", reason)  # the driver's words name the database's host and port
        return error_response(503, "unavailable", "database unreachable: the server's log says why")

    async def validation_error(_: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, RequestValidationError | pydantic.ValidationError)
        return error_response(422, "invalid_input", describe_validation(error.errors()))

    async def unexpected_error(_: Request, error: Exception) -> JSONResponse:
        return error_response(500, "internal_error", f"unexpected {type(error).__name__}; see the server log")

    async def http_error(_: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, StarletteHTTPException)
        kind = _HTTP_KINDS.get(error.status_code, "error")
        return error_response(error.status_code, kind, str(error.detail), headers=error.headers)

    app.add_exception_handler(DmaUpgradeError, product_error)
    app.add_exception_handler(sa.exc.DatabaseError, database_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(pydantic.ValidationError, validation_error)  # a request turned into engine models
    app.add_exception_handler(Exception, unexpected_error)


def describe_validation(errors: Sequence[Any]) -> str:
    """FastAPI's validation errors as one line: ``where: what`` for each (the input itself left out)."""
    problems = [f"{'.'.join(str(part) for part in e.get('loc', ()))}: {e.get('msg', 'invalid')}" for e in errors]
    return "; ".join(problems) or "the request is not valid"


_HTTP_KINDS = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
               413: "too_large", 415: "unsupported_media_type"}
