"""What every request handler reaches: the wired services of the serving process."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from adapters.api.auth import Principal, Role, TokenFile
from adapters.api.progress_cache import ProgressCache
from adapters.bootstrap import Container
from adapters.package_store import FilePackageStore
from engine.service import UpgradeService


@dataclass
class ApiContext:
    """One serving process's services, shared by every request."""

    container: Container
    service: UpgradeService
    packages: FilePackageStore
    tokens: TokenFile
    progress: ProgressCache = field(init=False)

    def __post_init__(self) -> None:
        self.progress = ProgressCache(self.container)


def api_context(request: Request) -> ApiContext:
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


def allowed(role: Role) -> object:
    """A dependency that lets through callers whose role is at least ``role`` (401 unknown, 403 too low)."""

    def check(principal: Annotated[Principal, Depends(_authenticate)]) -> Principal:
        if principal.role < role:
            raise HTTPException(403, f"{principal.name} is a {principal.role.label}: this needs the "
                                     f"{role.label} role")
        return principal

    return Depends(check)


Viewer = Annotated[Principal, allowed(Role.VIEWER)]
Operator = Annotated[Principal, allowed(Role.OPERATOR)]
Admin = Annotated[Principal, allowed(Role.ADMIN)]
