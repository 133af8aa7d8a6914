"""The browser pages: static HTML, one ES module per page plus a shared one (``common.js``), one style sheet.

Progress is at ``/``; Agents, Upgrade (the Upgrade window's Schedule tab), Packages, Settings and Audit at
``/<page>``. The pages are open (no token to load them); their scripts call ``/api/v1`` with a token that the
person types into a small form or passes as the URL fragment ``#token=...`` (fragments never reach the server,
so the token stays out of access logs), kept in the tab's sessionStorage. Data is only ever written as text.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.resources import files

from fastapi import APIRouter, HTTPException
from fastapi.responses import Response

_STATIC = files("dma_upgrade.adapters.api") / "static"
PAGES = {"": "index.html", "agents": "agents.html", "upgrade": "upgrade.html", "packages": "packages.html",
         "settings": "settings.html", "audit": "audit.html"}
"""Each page's path (after ``/``) and its file."""
_ASSETS = {name: "text/javascript" for name in ("common.js", "progress.js", "agents.js", "upgrade.js", "packages.js",
                                                 "settings.js", "audit.js")} | {"site.css": "text/css"}
_MEDIA_TYPES = {**{page: "text/html" for page in PAGES.values()}, **_ASSETS}
_FILES = {name: (_STATIC / name).read_bytes() for name in _MEDIA_TYPES}

_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
                               "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}
"""Only this origin's script and style, no framing, no referrer (a fragment token never leaks anyway)."""

router = APIRouter(include_in_schema=False)


def _serve(name: str) -> Response:
    return Response(_FILES[name], media_type=_MEDIA_TYPES[name], headers=_HEADERS)


def _page(name: str) -> Callable[[], Response]:
    def page() -> Response:
        return _serve(name)

    return page


for _path, _name in PAGES.items():
    router.add_api_route(f"/{_path}", _page(_name), methods=["GET"], name=_name)


@router.get("/static/{name}")
def page_asset(name: str) -> Response:
    """A page's script or the style sheet."""
    if name not in _ASSETS:
        raise HTTPException(404, f"no such file: {name}")
    return _serve(name)
