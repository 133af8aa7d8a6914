"""The live progress page at ``/`` (the Progress tab): one static HTML file, a script and a style sheet.

The page is open (no token to load it). Its script reads ``/api/v1/progress`` every second with a viewer
token that the person types into a small form or passes as the URL fragment ``#token=...`` (fragments never
reach the server, so the token stays out of access logs), and keeps it in the tab's sessionStorage.
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import APIRouter, HTTPException
from fastapi.responses import Response

_STATIC = files("dma_upgrade.adapters.api") / "static"
_MEDIA_TYPES = {"index.html": "text/html", "progress.js": "text/javascript", "progress.css": "text/css"}
_FILES = {name: (_STATIC / name).read_bytes() for name in _MEDIA_TYPES}
_ASSETS = ("progress.js", "progress.css")

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


@router.get("/")
def progress_page() -> Response:
    """The Progress tab: rollouts, and per agent its state, activity and a bar, updated every second."""
    return _serve("index.html")


@router.get("/static/{name}")
def page_asset(name: str) -> Response:
    """The page's script or style sheet."""
    if name not in _ASSETS:
        raise HTTPException(404, f"no such file: {name}")
    return _serve(name)
