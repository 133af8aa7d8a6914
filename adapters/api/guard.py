"""What a request body must pass before any of it is read: a known bearer token, and a size limit.

FastAPI reads and parses a body before a route's dependencies run, so without this an anonymous client
could make the server hold a JSON body of any size in memory, or spool a multipart upload of any size
to disk, before it answers 401. ``BodyGuard`` answers first: 401 to a body under ``/api/`` without a
configured token, 413 to a declared length over the route's limit, and 413 as soon as a streamed
(chunked) body passes it. Roles are still checked by the routes (403).
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from adapters.api.auth import TokenFile, TokenFileUnreadable
from adapters.api.errors import error_response
from adapters.settings import Settings

JSON_LIMIT = 8 * 1024 * 1024
"""The largest body of any route but the upload (a rollout naming 10,000 agents is well under 2 MiB)."""
MULTIPART_OVERHEAD = 64 * 1024
"""What multipart framing may add to an upload's file."""


def body_limits(settings: Settings) -> Callable[[str, str], int]:
    """The body limit of each route: the upload's file plus framing, ``JSON_LIMIT`` for every other."""
    upload = settings.max_upload_bytes + MULTIPART_OVERHEAD

    def limit_for(method: str, path: str) -> int:
        return upload if (method, path.rstrip("/")) == ("POST", "/api/v1/packages") else JSON_LIMIT

    return limit_for


class BodyGuard:
    """ASGI middleware: refuse bodies from unknown callers (401) and over ``limit_for(method, path)`` (413)."""

    def __init__(self, app: ASGIApp, tokens: TokenFile, limit_for: Callable[[str, str], int]) -> None:
        self.app = app
        self.tokens = tokens
        self.limit_for = limit_for

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
        if scope["path"].startswith("/api/") and not self._known(headers.get("authorization", "")):
            refusal = error_response(401, "unauthorized", "a valid bearer token is required to send a body",
                                     headers={"WWW-Authenticate": "Bearer"})
            await refusal(scope, receive, send)
            return
        limit = self.limit_for(scope["method"], scope["path"])
        if declared.isdigit() and int(declared) > limit:
            await error_response(413, "too_large", f"the body is {declared} bytes, over the limit of {limit} "
                                                   f"bytes")(scope, receive, send)
            return
        await self.app(scope, _counting(receive, limit), send)

    def _known(self, authorization: str) -> bool:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return False
        try:
            return self.tokens.authenticate(token.strip()) is not None
        except TokenFileUnreadable:
            return True  # let the request through to its route, which answers 503


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
