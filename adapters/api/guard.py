"""What a request body must pass before any of it is read: a known bearer token with the route's role, a size
limit, and for an upload a free upload slot.

FastAPI reads and parses a body before a route's dependencies run, so without this a caller could make the
server hold a JSON body of any size in memory, or spool a multipart upload of any size to disk, before it
answers 401 or 403. ``BodyGuard`` answers first, for a body under ``/api/``: 401 without a configured token,
403 to a role below the one the route needs (``needed_role``), 503 while the token file cannot be read, 413 to a
declared length over the route's limit, 503 while every upload slot is taken (``DMA_UPGRADE_API_CONCURRENT_UPLOADS``)
— and 413 as soon as a streamed (chunked) body passes the limit.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext

from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dma_upgrade.adapters.access.tokens import Role, TokenFile
from dma_upgrade.adapters.api.errors import error_response
from dma_upgrade.adapters.api.limits import Admission
from dma_upgrade.adapters.errors import FORBIDDEN, TOO_LARGE, UNAUTHORIZED, UNAVAILABLE, TokenFileUnreadable, outcome_of

JSON_LIMIT = 8 * 1024 * 1024
"""The largest body of any route but the upload (a rollout naming 10,000 agents is well under 2 MiB)."""
MULTIPART_OVERHEAD = 64 * 1024
"""What multipart framing may add to an upload's file."""
UPLOAD = ("POST", "/api/v1/packages")
"""The upload route: the package's limit instead of ``JSON_LIMIT``, and one of the upload slots."""


class BodyGuard:
    """ASGI middleware: refuse a body before reading it unless its caller, size and upload slot pass."""

    def __init__(self, app: ASGIApp, tokens: TokenFile, role_for: Callable[[Scope], Role], max_upload_bytes: int,
                 uploads: Admission) -> None:
        self.app = app
        self.tokens = tokens
        self.role_for = role_for
        self.upload_limit = max_upload_bytes + MULTIPART_OVERHEAD
        self.uploads = uploads

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]}
        declared = headers.get("content-length", "")
        has_body = "transfer-encoding" in headers or (declared.isdigit() and int(declared) > 0)
        if not has_body:
            await self.app(scope, receive, send)
            return
        upload = (scope["method"], scope["path"].rstrip("/")) == UPLOAD
        limit = self.upload_limit if upload else JSON_LIMIT
        refusal = self._refusal(scope, headers, upload, limit)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        with self.uploads.slot() if upload else nullcontext():
            await self.app(scope, _counting(receive, limit), send)

    def _refusal(self, scope: Scope, headers: dict[str, str], upload: bool, limit: int) -> Response | None:
        """The answer to a body that may not be read (None when it may): the caller's refusal under ``/api/``, 413
        for a declared length over ``limit``, 503 for an upload while every upload slot is taken."""
        if scope["path"].startswith("/api/"):
            caller = self._caller_refusal(scope, headers.get("authorization", ""))
            if caller is not None:
                return caller
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            return error_response(TOO_LARGE, f"the body is {declared} bytes, over the limit of {limit} bytes")
        busy = self.uploads.refusal() if upload else None
        return None if busy is None else error_response(UNAVAILABLE, busy)

    def _caller_refusal(self, scope: Scope, authorization: str) -> Response | None:
        """401 (no valid token), 403 (a role below the route's) or 503 (a broken token file); None for a caller
        who may send this body."""
        scheme, _, token = authorization.partition(" ")
        token = token.strip() if scheme.lower() == "bearer" else ""
        try:
            principal = self.tokens.authenticate(token) if token else None
        except TokenFileUnreadable as error:
            return error_response(outcome_of(error), str(error))
        if principal is None:
            return error_response(UNAUTHORIZED, "a valid bearer token is required to send a body",
                                  headers={"WWW-Authenticate": "Bearer"})
        forbidden = principal.refusal(self.role_for(scope))
        return None if forbidden is None else error_response(FORBIDDEN, forbidden)


def _counting(receive: Receive, limit: int) -> Receive:
    """``receive`` that raises 413 once the body read so far passes ``limit``."""
    received = 0

    async def limited() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise HTTPException(413, f"the body passed the limit of {limit} bytes")
        return message

    return limited
