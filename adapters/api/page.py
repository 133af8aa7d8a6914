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
PAGES = {"": ("Progress", "progress"), "agents": ("Agents", "agents"), "upgrade": ("Upgrade", "upgrade"),
         "packages": ("Packages", "packages"), "settings": ("Settings", "settings"), "audit": ("Audit", "audit")}
"""Each page's path (after ``/``), its title and its name: ``static/<name>.html`` holds what the page shows, inside
the one frame every page shares (``static/page.html``), and ``static/<name>.js`` is its script."""
_ASSETS = {f"{name}.js": "text/javascript" for _, name in PAGES.values()} | {"common.js": "text/javascript",
                                                                             "site.css": "text/css"}
_FILES = {name: (_STATIC / name).read_bytes() for name in _ASSETS}


_FRAME = (_STATIC / "page.html").read_text(encoding="utf-8")


def _framed(title: str, name: str) -> bytes:
    """The page ``name``: its own part in the shared frame (the head, the header, the message line)."""
    content = (_STATIC / f"{name}.html").read_text(encoding="utf-8")
    return (_FRAME.replace("{title}", title).replace("{script}", name)
            .replace("{content}", content.rstrip("\n")).encode())


_PAGES = {path: _framed(title, name) for path, (title, name) in PAGES.items()}

_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
                               "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}
"""Only this origin's script and style, no framing, no referrer (a fragment token never leaks anyway)."""

router = APIRouter(include_in_schema=False)


def _page(path: str) -> Callable[[], Response]:
    def page() -> Response:
        return Response(_PAGES[path], media_type="text/html", headers=_HEADERS)

    return page


for _path, (_title, _name) in PAGES.items():
    router.add_api_route(f"/{_path}", _page(_path), methods=["GET"], name=_name)


@router.get("/static/{name}")
def page_asset(name: str) -> Response:
    """A page's script or the style sheet."""
    if name not in _ASSETS:
        raise HTTPException(404, f"no such file: {name}")
    return Response(_FILES[name], media_type=_ASSETS[name], headers=_HEADERS)
