"""The Progress tab, in headless Chromium, follows a real rollout until every agent is Completed (SQLite, then
PostgreSQL).

The site (``site.running_site``) serves five agents (a main/backup failover pair among them) with a token per
role; a package is uploaded and the rollout started through the real CLI in subprocesses once the page is open.
The page is read through ``SNAPSHOT``, one script that returns what it shows.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from dma_upgrade.adapters.access.tokens import Role
from tests.e2e.engine_cluster import CLUSTER, NEW
from tests.e2e.pages.browser import NEEDS_BROWSER, wait_for
from tests.e2e.pages.site import AGENTS, Site, running_site

pytestmark = NEEDS_BROWSER

IN_FLIGHT = {"Uploaded", "SNMPStopped", "Installing", "SwitchedOver", "Rebooting"}
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


@pytest.fixture(scope="module")
def site(browser: Any, database_url: str | None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """The site, with a package for ``NEW`` uploaded through the CLI."""
    with running_site(tmp_path_factory.mktemp("progress-page"), database_url) as site:
        site.cli("packages", "upload", str(site.build(NEW)))
        yield site


def _wait(browser: Any, site: Site, what: str, done: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    return wait_for(browser, what, SNAPSHOT, done, log=site.log)


def _started(output: str) -> str:
    found = re.search(r"Rollout ([0-9a-f-]{36}) (started|scheduled)", output)
    assert found, output
    return found.group(1)


def test_a_refused_token_is_reported_as_401_and_the_form_asks_for_another(browser: Any, site: Site) -> None:
    browser.get(f"{site.url}/#token=not-a-configured-token")
    shown = _wait(browser, site, "the 401 message", lambda s: "401" in s["message"])
    assert shown["form"] and not shown["rollouts"]
    assert "refused the token" in shown["message"]


def test_the_page_follows_a_rollout_live_until_every_agent_is_completed(browser: Any, site: Site) -> None:
    browser.get(site.page("", Role.VIEWER))
    shown = _wait(browser, site, "that it is live", lambda s: "live" in s["status"])
    assert shown["hash"] == "" and not shown["form"]  # the token left the address bar

    rollout_id = _started(site.cli("upgrade", "start", "--package", f"DataMiner {NEW} Full Upgrade.dmupgrade",
                                   "--all-agents-in-cluster", CLUSTER, "--failover-policy", "backup-first",
                                   "--no-delayed-start"))

    def rollout(s: dict[str, Any]) -> dict[str, Any] | None:
        return next((r for r in s["rollouts"] if r["id"] == rollout_id), None)

    def in_flight(s: dict[str, Any]) -> bool:
        found = rollout(s)
        return found is not None and any(a["state"] in IN_FLIGHT for a in found["agents"].values())

    _wait(browser, site, "an agent in flight", in_flight)

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
    browser.find_element(By.ID, "token").send_keys(site.tokens[Role.VIEWER])
    browser.find_element(By.CSS_SELECTOR, "#token-form button[type=submit]").click()
    _wait(browser, site, "progress read with the typed token", live)
    browser.refresh()
    _wait(browser, site, "progress read with the kept token after a reload", live)


def test_a_scheduled_rollout_shows_when_it_is_to_start_and_once_cancelled_that_it_never_started(
        browser: Any, site: Site) -> None:
    package = site.build(LATER)
    site.cli("packages", "upload", str(package))
    start_at = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0)
    rollout_id = _started(site.cli("upgrade", "start", "--package", package.name, "--all-agents-in-cluster", CLUSTER,
                                   "--at", start_at.isoformat()))
    browser.get(site.page("", Role.VIEWER))

    def meta(s: dict[str, Any]) -> str:
        return next((r["meta"] for r in s["rollouts"] if r["id"] == rollout_id), "")

    waiting = meta(_wait(browser, site, "the scheduled start", lambda s: "scheduled for " in meta(s)))
    assert "started" not in waiting.replace("scheduled", "")
    site.cli("upgrade", "cancel", rollout_id)
    cancelled = meta(_wait(browser, site, "the cancelled rollout", lambda s: "never started" in meta(s)))
    assert re.search(r"scheduled for \d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}, never started", cancelled), cancelled
