"""Headless Chromium for the page tests: Debian's ``chromium`` driven through its ``chromium-driver`` by selenium,
both found on ``PATH`` (never downloaded).

Without them the page tests skip, saying why, unless ``DMA_UPGRADE_REQUIRE_BROWSER=1`` (as CI sets): then they
fail. Pages are read through scripts that return what they show (sections are redrawn whenever their data
changes, so element handles would go stale); every wait is bounded and fails with what the page last showed.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
REQUIRE = "DMA_UPGRADE_REQUIRE_BROWSER"
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1280,900")
WAIT_SECONDS = 120.0
T = TypeVar("T")


def _browser_missing() -> str | None:
    missing = [name for name, path in (("chromium", CHROMIUM), ("chromedriver", CHROMEDRIVER)) if path is None]
    if missing:
        return f"the page tests need {' and '.join(missing)} (apt-get install chromium chromium-driver)"
    if importlib.util.find_spec("selenium") is None:
        return "the page tests need selenium (pip install -e '.[dev]')"
    return None


MISSING = _browser_missing()
NEEDS_BROWSER = [pytest.mark.slow,
                 pytest.mark.skipif(MISSING is not None and os.environ.get(REQUIRE) != "1", reason=MISSING or "")]
"""The marks of every page test module (``pytestmark = NEEDS_BROWSER``)."""


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Headless Chromium with a fresh profile, driven through Debian's chromedriver."""
    if MISSING is not None or CHROMIUM is None or CHROMEDRIVER is None:
        pytest.fail(f"{REQUIRE}=1 but {MISSING}")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(browser: Any, what: str, script: str, done: Callable[[T], bool], *, log: Path | None = None,
             args: tuple[Any, ...] = ()) -> T:
    """What ``script`` (run with ``args``) returns once ``done`` holds for it, within ``WAIT_SECONDS`` (selenium's
    ``WebDriverWait``); fail with the last answer and the tail of ``log`` (the server's output) otherwise."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.wait import WebDriverWait

    last: list[T] = []

    def shown(driver: Any) -> bool:
        last[:] = [driver.execute_script(script, *args)]
        return done(last[0])

    try:
        WebDriverWait(browser, WAIT_SECONDS, poll_frequency=0.1).until(shown)
    except TimeoutException:
        tail = f"\nserve log:\n{log.read_text()[-4000:]}" if log is not None else ""
        pytest.fail(f"the page did not show {what} within {WAIT_SECONDS:g} s; it showed {last}{tail}")
    return last[0]
