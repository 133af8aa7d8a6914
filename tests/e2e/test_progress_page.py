"""The live progress page, in headless Chromium, follows a real rollout until every agent is Completed.

Five agents (a main/backup failover pair among them) are registered, a package is built and uploaded
and a viewer token made, all through the real CLI in subprocesses; then ``dma-upgrade serve`` runs as a
subprocess on a free loopback port (``--port 0``) with a temporary data folder and the simulated agent
gateway, each of whose steps takes ``STEP_SECONDS`` (``DMA_UPGRADE_SIMULATED_STEP_SECONDS``), and the
rollout is started through the CLI once the page is open. The browser is Debian's ``chromium``, driven
through its ``chromium-driver`` by selenium, both named by path so nothing is downloaded. Without them the
tests skip, saying why, unless ``DMA_UPGRADE_REQUIRE_BROWSER=1`` (as CI sets): then they fail.

The page is read through ``SNAPSHOT``, one script that returns what it shows (sections are redrawn
whenever their data changes, so element handles would go stale); every wait is bounded.
"""

from __future__ import annotations

import importlib.util
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.cli import run_cli
from tests.e2e.engine_cluster import BACKUP, CLUSTER, MAIN, NEW, OLD, PLAIN
from tests.e2e.serve import serving

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
REQUIRE = "DMA_UPGRADE_REQUIRE_BROWSER"
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1280,900")
STEP_SECONDS = 1.0
"""Each agent step takes this long, so the page shows agents in flight between its one-second polls."""
WAIT_SECONDS = 120.0
IN_FLIGHT = {"Uploaded", "SNMPStopped", "Installing", "SwitchedOver", "Rebooting"}
AGENTS = (*PLAIN, MAIN, BACKUP)
LATER = "10.4.10.0-15001"
"""The version of a second package, for a rollout scheduled after the first one used its package."""

SNAPSHOT = """
const text = (node, selector) => (node.querySelector(selector) || {}).textContent || "";
const shown = (id) => document.getElementById(id).getClientRects().length > 0;
return {
  message: shown("message") ? document.getElementById("message").textContent : "",
  form: shown("token-form"),
  status: document.getElementById("status").textContent,
  hash: location.hash,
  rollouts: [...document.querySelectorAll("section.rollout")].map((section) => ({
    id: section.dataset.rollout,
    state: text(section, "h2 .state"),
    meta: text(section, ".meta"),
    totals: text(section, ".totals"),
    agents: Object.fromEntries([...section.querySelectorAll("tbody tr")].map((row) => [row.dataset.agent, {
      state: text(row, "td.state"),
      percent: row.querySelector("[role=progressbar]").getAttribute("aria-valuenow"),
      activity: text(row, "td.activity"),
    }])),
  })),
};
"""


def _browser_missing() -> str | None:
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
    if missing:
        return f"the progress page tests need {' and '.join(missing)} (apt-get install chromium chromium-driver)"
    if importlib.util.find_spec("selenium") is None:
        return "the progress page tests need selenium (pip install -e '.[dev]')"
    return None


MISSING = _browser_missing()
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(MISSING is not None and os.environ.get(REQUIRE) != "1", reason=MISSING or "")]


@dataclass
class Site:
    """A running ``dma-upgrade serve`` over five registered agents and an uploaded package."""

    env: dict[str, str]
    url: str
    token: str
    package: str
    log: Path

    def cli(self, *args: str) -> str:
        return _ok(self.env, *args)


def _ok(env: dict[str, str], *args: str) -> str:
    result = run_cli(*args, env=env)
    assert result.returncode == 0, f"dma-upgrade {' '.join(args)}: {result.stdout}{result.stderr}"
    return result.stdout


def _registrations() -> list[tuple[str, ...]]:
    """The ``agents add`` command lines: three plain agents and a main/backup pair."""
    commands: list[tuple[str, ...]] = [
        ("agents", "add", name, "--address", f"10.0.0.{n}", "--cluster", CLUSTER, "--version", OLD)
        for n, name in enumerate(PLAIN, start=11)]
    for n, (name, partner, role) in enumerate(((MAIN, BACKUP, "main"), (BACKUP, MAIN, "backup")), start=21):
        commands.append(("agents", "add", name, "--address", f"10.0.0.{n}", "--cluster", CLUSTER, "--version", OLD,
                         "--failover-partner", partner, "--failover-role", role))
    return commands


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Headless Chromium with a fresh profile, driven through Debian's chromedriver."""
    if MISSING is not None:
        pytest.fail(f"{REQUIRE}=1 but {MISSING}")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def site(browser: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """Agents registered, a package uploaded and a viewer token made (CLI), then ``serve`` started."""
    tmp = tmp_path_factory.mktemp("progress-page")
    env = {"DMA_UPGRADE_DATA_DIR": str(tmp / "data"), "DMA_UPGRADE_ACTOR": "page-test",
           "DMA_UPGRADE_AGENT_GATEWAY": "simulated", "DMA_UPGRADE_SIMULATED_STEP_SECONDS": str(STEP_SECONDS)}
    for registration in _registrations():
        _ok(env, *registration)
    package = _ok(env, "packages", "build", "--version", NEW, "--output", str(tmp)).strip().splitlines()[-1]
    _ok(env, "packages", "upload", package)
    token = _ok(env, "tokens", "add", "page-viewer", "--role", "viewer").strip()
    with serving(tmp / "serve.log", "--poll-seconds", "0.2", "--host", "127.0.0.1", env=env,
                 timeout=WAIT_SECONDS) as serve:
        yield Site(env, serve.url, token, Path(package).name, serve.log)


def _wait(browser: Any, site: Site, what: str, done: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """Wait (bounded) until the page shows ``what``; fail with the last snapshot and the engine's log."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        shown: dict[str, Any] = browser.execute_script(SNAPSHOT)
        if done(shown):
            return shown
        if time.monotonic() > deadline:
            pytest.fail(f"the page did not show {what} within {WAIT_SECONDS:g} s; it showed {shown}\n"
                        f"serve log:\n{site.log.read_text()[-4000:]}")
        time.sleep(0.1)


def test_a_refused_token_is_reported_as_401_and_the_form_asks_for_another(browser: Any, site: Site) -> None:
    browser.get(f"{site.url}/#token=not-a-configured-token")
    shown = _wait(browser, site, "the 401 message", lambda s: "401" in s["message"])
    assert shown["form"] and not shown["rollouts"]
    assert "refused the token" in shown["message"]


def test_the_page_follows_a_rollout_live_until_every_agent_is_completed(
        browser: Any, site: Site, tmp_path_factory: pytest.TempPathFactory) -> None:
    browser.get(f"{site.url}/#token={site.token}")
    shown = _wait(browser, site, "that it is live", lambda s: "live" in s["status"])
    assert shown["hash"] == "" and not shown["form"]  # the token left the address bar

    started = site.cli("upgrade", "start", "--package", site.package, "--all-agents-in-cluster", CLUSTER,
                       "--failover-policy", "backup-first", "--no-delayed-start")
    found = re.search(r"Rollout ([0-9a-f-]{36}) started", started)
    assert found, started
    rollout_id = found.group(1)

    def rollout(s: dict[str, Any]) -> dict[str, Any] | None:
        return next((r for r in s["rollouts"] if r["id"] == rollout_id), None)

    def in_flight(s: dict[str, Any]) -> bool:
        found = rollout(s)
        return found is not None and any(a["state"] in IN_FLIGHT for a in found["agents"].values())

    _wait(browser, site, "an agent in flight", in_flight)
    browser.save_screenshot(str(tmp_path_factory.mktemp("screenshots") / "in-flight.png"))

    def all_completed(s: dict[str, Any]) -> bool:
        found = rollout(s)
        return found is not None and found["state"] == "Completed" \
            and all(a["state"] == "Completed" for a in found["agents"].values())

    done = rollout(_wait(browser, site, "every agent Completed", all_completed))
    assert done is not None
    assert set(done["agents"]) == set(AGENTS)
    assert {(a["percent"], a["activity"]) for a in done["agents"].values()} == {("100", "done")}
    assert done["totals"] == "5 completed · 0 failed · 0 in flight · 0 waiting · 0 cancelled"


def test_a_token_typed_into_the_form_is_kept_for_the_tab_across_reloads(browser: Any, site: Site) -> None:
    from selenium.webdriver.common.by import By

    def live(s: dict[str, Any]) -> bool:
        return "live" in s["status"] and not s["form"]

    browser.get(f"{site.url}/")
    browser.execute_script("sessionStorage.clear(); location.reload();")
    _wait(browser, site, "the token form", lambda s: s["form"])
    browser.find_element(By.ID, "token").send_keys(site.token)
    browser.find_element(By.CSS_SELECTOR, "#token-form button[type=submit]").click()
    _wait(browser, site, "progress read with the typed token", live)
    browser.refresh()
    _wait(browser, site, "progress read with the kept token after a reload", live)


def test_a_scheduled_rollout_shows_when_it_is_to_start_and_once_cancelled_that_it_never_started(
        browser: Any, site: Site, tmp_path_factory: pytest.TempPathFactory) -> None:
    built = site.cli("packages", "build", "--version", LATER, "--output", str(tmp_path_factory.mktemp("later")))
    site.cli("packages", "upload", built.strip().splitlines()[-1])
    start_at = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0)
    started = site.cli("upgrade", "start", "--package", Path(built.strip().splitlines()[-1]).name,
                       "--all-agents-in-cluster", CLUSTER, "--at", start_at.isoformat())
    found = re.search(r"Rollout ([0-9a-f-]{36}) (started|scheduled)", started)
    assert found, started
    rollout_id = found.group(1)
    browser.get(f"{site.url}/#token={site.token}")

    def meta(s: dict[str, Any]) -> str:
        return next((r["meta"] for r in s["rollouts"] if r["id"] == rollout_id), "")

    waiting = meta(_wait(browser, site, "the scheduled start", lambda s: "scheduled for " in meta(s)))
    assert "started" not in waiting.replace("scheduled", "")
    site.cli("upgrade", "cancel", rollout_id)
    cancelled = meta(_wait(browser, site, "the cancelled rollout", lambda s: "never started" in meta(s)))
    assert re.search(r"scheduled for \d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}, never started", cancelled), cancelled
