"""What every request handler reaches: the wired services of the serving process."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Annotated

import anyio
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import iter_route_contexts
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.routing import Match
from starlette.types import Scope

from dma_upgrade.adapters.access.tokens import Principal, Role, TokenFile
from dma_upgrade.adapters.api.limits import Admission
from dma_upgrade.adapters.api.progress_cache import ProgressCache
from dma_upgrade.adapters.bootstrap import App
from dma_upgrade.adapters.packages.store import FilePackageStore
from dma_upgrade.engine.service import UpgradeService

PROBE_THREADS = 4
"""Worker threads of their own for ``/readyz`` and ``/metrics`` (they read the database)."""


@dataclass
class ApiContext:
    """One serving process's services, shared by every request, and the caps on what holds the server long."""

    app: App
    """The process as ``bootstrap`` wired it."""
    tokens: TokenFile
    progress: ProgressCache = field(init=False)
    agent_calls: Admission = field(init=False)
    """Requests that wait on agents (``DMA_UPGRADE_API_AGENT_CALLS``)."""
    uploads: Admission = field(init=False)
    """Package uploads (``DMA_UPGRADE_API_CONCURRENT_UPLOADS``)."""
    probes: anyio.CapacityLimiter = field(init=False)
    """The threads of ``/readyz`` and ``/metrics``, apart from the ones every other route shares."""

    @property
    def service(self) -> UpgradeService:
        return self.app.service

    @property
    def packages(self) -> FilePackageStore:
        return self.app.packages

    def __post_init__(self) -> None:
        settings = self.app.settings
        self.progress = ProgressCache(self.app)
        self.agent_calls = Admission(settings.api_agent_calls, "calls waiting on agents",
                                     "DMA_UPGRADE_API_AGENT_CALLS")
        self.uploads = Admission(settings.api_concurrent_uploads, "uploads", "DMA_UPGRADE_API_CONCURRENT_UPLOADS")
        self.probes = anyio.CapacityLimiter(PROBE_THREADS)


async def api_context(request: Request) -> ApiContext:
    """The serving process's services, as every handler receives them (``Context``)."""
    context: ApiContext = request.app.state.api
    return context


Context = Annotated[ApiContext, Depends(api_context)]

_bearer = HTTPBearer(auto_error=False, description="a token from `dma-upgrade tokens add NAME --role ROLE`")


def _authenticate(context: Context,
                  credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> Principal:
    if credentials is None:
        raise HTTPException(401, "a bearer token is required", headers={"WWW-Authenticate": "Bearer"})
    principal = context.tokens.authenticate(credentials.credentials)
    if principal is None:
        raise HTTPException(401, "the bearer token is not valid", headers={"WWW-Authenticate": "Bearer"})
    return principal


def _role_check(role: Role) -> Callable[[Principal], Principal]:
    def check(principal: Annotated[Principal, Depends(_authenticate)]) -> Principal:
        refusal = principal.refusal(role)
        if refusal is not None:
            raise HTTPException(403, refusal)
        return principal

    return check


_ROLE_CHECKS = {role: _role_check(role) for role in Role}


def allowed(role: Role) -> object:
    """A dependency that lets through callers whose role is at least ``role`` (401 unknown, 403 too low)."""
    return Depends(_ROLE_CHECKS[role])


def needed_role(app: FastAPI, scope: Scope) -> Role:
    """The role the route answering ``scope`` needs: its ``allowed`` dependency's, or a viewer's (any valid token)
    for an open route or none. Read from the routes, so a body can be refused by role before it is read."""
    route = next((r for r in iter_route_contexts(app.routes) if r.matches(scope)[0] is Match.FULL), None)
    dependant: Dependant | None = getattr(route, "dependant", None)
    checks = {dependency.call for dependency in _dependants(dependant)} if dependant is not None else set()
    return max((role for role, check in _ROLE_CHECKS.items() if check in checks), default=Role.VIEWER)


def _dependants(dependant: Dependant) -> Iterator[Dependant]:
    for dependency in dependant.dependencies:
        yield dependency
        yield from _dependants(dependency)


Viewer = Annotated[Principal, allowed(Role.VIEWER)]
Operator = Annotated[Principal, allowed(Role.OPERATOR)]
Admin = Annotated[Principal, allowed(Role.ADMIN)]
