"""The page tests' fixtures: headless Chromium, the database each site runs on, and where screenshots go."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import _truncate_all
from tests.e2e.pages.browser import browser

__all__ = ["browser", "database_url", "screenshots"]

SCREENSHOTS_ENV = "DMA_UPGRADE_SCREENSHOTS"
"""A folder for the pages' screenshots (default: ``screenshots`` under the run's pytest temporary folder)."""
DOCS_ENV = "DMA_UPGRADE_UPDATE_DOCS_SCREENSHOTS"
"""Set to 1 to copy each page's screenshot (from the SQLite run) to ``docs/screenshots/`` for the README."""
DOCS = Path(__file__).resolve().parents[3] / "docs" / "screenshots"


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str | None:
    """The database a module's site runs on: None for the data folder's SQLite file, else the run's PostgreSQL
    test database, emptied."""
    if request.param == "sqlite":
        return None
    url = str(request.getfixturevalue("postgres_server_url"))
    _truncate_all(url)
    return url


class Screenshots:
    """Writes a page's screenshot, whole, to ``folder/<database>/<page>.png``, and to the docs when asked."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def take(self, browser: Any, page: str, database: str) -> Path:
        """Save what ``browser`` shows as ``page`` (the page's full height) and return the file."""
        target = self.folder / database / f"{page}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        height = browser.execute_script("window.scrollTo(0, 0); return document.documentElement.scrollHeight")
        width, original = 1280, browser.get_window_size()
        browser.set_window_size(width, max(int(height), 600) + 200)
        try:
            browser.save_screenshot(str(target))
        finally:
            browser.set_window_size(original["width"], original["height"])
        if os.environ.get(DOCS_ENV) == "1" and database == "sqlite":
            DOCS.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(target, DOCS / target.name)
        return target


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Screenshots:
    """Where the page tests put their screenshots (printed, so a reviewer finds them)."""
    folder = Path(os.environ.get(SCREENSHOTS_ENV) or tmp_path_factory.getbasetemp() / "screenshots")
    print(f"\npage screenshots go to {folder}")
    return Screenshots(folder)
