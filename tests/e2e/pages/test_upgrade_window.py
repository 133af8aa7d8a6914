"""The pages in headless Chromium, end to end against a real ``serve`` (SQLite, then PostgreSQL): an operator
uploads a package in the Upgrade window, previews the plan and starts it two seconds ahead, watches the
countdown, the start and every agent reach Completed; a viewer sees no action; an admin changes the default
failover policy and the next plan uses it; a refused action shows the API's one-line error. Each page's
screenshot is written under the run's output folder (``conftest.Screenshots``)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from dma_upgrade.adapters.access.tokens import Role
from tests.e2e.engine_cluster import BACKUP, CLUSTER, NEW, OLD
from tests.e2e.pages.browser import NEEDS_BROWSER, wait_for
from tests.e2e.pages.conftest import Screenshots
from tests.e2e.pages.site import AGENTS, Site, running_site

pytestmark = NEEDS_BROWSER

LATER = "10.4.10.0-15001"
"""The version of a second package, uploaded through the API for the plans after the first rollout."""
SIMULTANEOUS = "Upgrade main and backup Agent simultaneously"
BACKUP_FIRST = "Upgrade backup Agent first, switch over and upgrade main"

SHOWN = """
const visible = (node) => node !== null && node.getClientRects().length > 0;
const texts = (selector) => [...document.querySelectorAll(selector)].filter(visible)
  .map((node) => node.textContent.trim());
const message = document.getElementById("message");
return {
  path: location.pathname, search: location.search, ready: document.body.dataset.ready === "yes",
  message: visible(message) ? message.textContent : "",
  caller: (document.getElementById("caller") || {}).textContent || "",
  nav: texts("nav a"),
  actions: texts("#page button, #page a.button"),
  inputs: [...document.querySelectorAll("#page input, #page select")].filter(visible).length,
  picked: texts(arguments[0]),
};
"""
"""What any page shows: its message line, caller, navigation, the actions offered and the texts of
``arguments[0]`` (a CSS selector)."""

ROLLOUTS = """
return [...document.querySelectorAll("section.rollout")].map((section) => ({
  id: section.dataset.rollout,
  state: section.dataset.state,
  meta: section.querySelector(".meta").textContent,
  countdown: section.querySelector(".countdown").hidden ? "" : section.querySelector(".countdown").textContent,
  controls: [...section.querySelectorAll(".controls button")].map((button) => button.textContent),
  agents: Object.fromEntries([...section.querySelectorAll("tbody tr")].map((row) => [row.dataset.agent,
                                                                                      row.dataset.state])),
}));
"""
"""The Progress tab's rollouts as it shows them."""

START_SOON = """
const at = new Date(Math.ceil(Date.now() / 1000) * 1000 + 2000);
const pad = (n) => String(n).padStart(2, "0");
const input = document.getElementById("start-at");
input.value = `${at.getFullYear()}-${pad(at.getMonth() + 1)}-${pad(at.getDate())}T` +
              `${pad(at.getHours())}:${pad(at.getMinutes())}:${pad(at.getSeconds())}`;
input.dispatchEvent(new Event("input", { bubbles: true }));
document.getElementById("upgrade").click();
return at.toISOString();
"""
"""Type a start two seconds ahead (in the browser's time zone) and click Upgrade at once."""


@pytest.fixture(scope="module")
def site(browser: Any, database_url: str | None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    with running_site(tmp_path_factory.mktemp("upgrade-window"), database_url) as site:
        yield site


@pytest.fixture(scope="module")
def database(database_url: str | None) -> str:
    """The name of the database the site runs on, for the screenshots' folder."""
    return "sqlite" if database_url is None else "postgres"


@pytest.fixture(scope="module")
def later(site: Site) -> str:
    """A second package, uploaded through the API: its SHA-256."""
    package = site.build(LATER)
    with package.open("rb") as file:
        uploaded = site.api("POST", "packages", Role.OPERATOR, files={"file": (package.name, file)})
    return str(uploaded["sha256"])


def shown(browser: Any, site: Site, what: str, done: Callable[[dict[str, Any]], bool],
          selector: str = "#none") -> dict[str, Any]:
    """What the page shows once ``done`` holds for it (``picked``: the texts ``selector`` finds)."""
    return wait_for(browser, what, SHOWN, done, log=site.log, args=(selector,))


def rollouts(browser: Any, site: Site, what: str, done: Callable[[list[dict[str, Any]]], bool]) -> list[Any]:
    return wait_for(browser, what, ROLLOUTS, done, log=site.log)


def click(browser: Any, element_id: str) -> None:
    from selenium.webdriver.common.by import By

    browser.find_element(By.ID, element_id).click()


def test_an_operator_uploads_a_package_plans_it_starts_it_two_seconds_ahead_and_every_agent_completes(
        browser: Any, site: Site, database: str, screenshots: Screenshots) -> None:
    from selenium.webdriver.common.by import By

    browser.get(site.page("agents", Role.OPERATOR))
    agents = shown(browser, site, "the agents", lambda s: s["ready"], "td.agent")
    assert sorted(agents["picked"]) == sorted([*AGENTS, "dma-s1", "dma-s2"])
    warning = browser.execute_script("return document.querySelector('[data-mixed]').textContent")
    assert warning == f"Mixed versions: {OLD} (dma-s1); {NEW} (dma-s2). All agents of a cluster must run the same " \
                      "DataMiner version.", warning
    screenshots.take(browser, "agents", database)
    browser.find_element(By.LINK_TEXT, f"Upgrade cluster {CLUSTER}…").click()
    shown(browser, site, "the Upgrade window for the cluster", lambda s: s["path"] == "/upgrade" and s["ready"])

    broken = site.folder / "broken.dmupgrade"
    broken.write_bytes(b"not a zip archive")
    browser.find_element(By.ID, "package-file").send_keys(str(broken))
    click(browser, "upload")
    refused = shown(browser, site, "the upload's validation error", lambda s: bool(s["picked"]), "#upload-error")
    assert refused["picked"][0].startswith("422 invalid_input: "), refused

    package = site.build(NEW)
    browser.find_element(By.ID, "package-file").send_keys(str(package))
    click(browser, "upload")
    shown(browser, site, "the uploaded package", lambda s: "Uploaded" in "".join(s["picked"]), "#upload-result")
    assert package.name in browser.execute_script("return document.getElementById('package').selectedOptions[0]"
                                                  ".textContent")
    browser.find_element(By.XPATH, "//summary[text()='Advanced upgrade options']").click()
    click(browser, "option-delayed-start")  # on by default: each agent would wait a minute before its start

    click(browser, "preview")
    plan = shown(browser, site, "the plan preview", lambda s: len(s["picked"]) == 5, "#plan tbody td.agent")
    facts = browser.execute_script(
        "return Object.fromEntries([...document.querySelectorAll('#plan-facts dd')].map("
        "(dd) => [dd.dataset.fact, dd.textContent]))")
    assert sorted(plan["picked"]) == sorted(AGENTS)
    assert facts["Failover policy"] == SIMULTANEOUS and facts["Start"] == "now", facts
    assert "Delayed Start off" in facts["Options"], facts
    screenshots.take(browser, "upgrade", database)

    browser.execute_script(START_SOON)
    landed = shown(browser, site, "the rollout's Progress tab",
                   lambda s: s["path"] == "/" and "rollout=" in s["search"] and s["ready"])
    rollout_id = landed["search"].removeprefix("?rollout=")
    assert "scheduled for" in landed["message"] and rollout_id in landed["message"], landed

    countdowns: list[str] = []

    def started(listed: list[dict[str, Any]]) -> bool:
        mine = next((r for r in listed if r["id"] == rollout_id), None)
        if mine is not None and mine["countdown"]:
            countdowns.append(mine["countdown"])
        return mine is not None and mine["state"] != "Planned"

    rollouts(browser, site, "the scheduled rollout start", started)
    assert any(text.startswith(("Starts in", "Starting now")) for text in countdowns), countdowns

    def in_flight(listed: list[dict[str, Any]]) -> bool:
        mine: dict[str, Any] = next((r for r in listed if r["id"] == rollout_id), {"agents": {}})
        return any(state not in ("Scheduled", "Completed") for state in mine["agents"].values()) \
            or mine.get("state") == "Completed"

    rollouts(browser, site, "an agent in flight", in_flight)
    screenshots.take(browser, "progress", database)

    def completed(listed: list[dict[str, Any]]) -> bool:
        mine = next((r for r in listed if r["id"] == rollout_id), None)
        return mine is not None and mine["state"] == "Completed" \
            and set(mine["agents"].values()) == {"Completed"}

    done = next(r for r in rollouts(browser, site, "every agent Completed", completed) if r["id"] == rollout_id)
    assert set(done["agents"]) == set(AGENTS)
    assert re.search(r"scheduled [\d-]+ [\d:]+, started [\d-]+ [\d:]+ \((on time|[\d.]+ s late)\)", done["meta"]), done


def test_agents_selected_on_the_agents_page_are_planned_and_one_added_by_an_unknown_ip_is_refused(
        browser: Any, site: Site, later: str) -> None:
    from selenium.webdriver.common.by import By

    browser.get(site.page("agents", Role.OPERATOR))
    shown(browser, site, "the agents", lambda s: s["ready"])
    for name in ("dma-01", "dma-02"):
        browser.find_element(By.CSS_SELECTOR, f"input.pick[value='{name}']").click()
    click(browser, "upgrade-selected")
    window = shown(browser, site, "the Upgrade window", lambda s: s["path"] == "/upgrade" and s["ready"],
                   "#agent-choices input:checked")
    assert window["inputs"] > 0 and window["message"] == "", window
    click(browser, "preview")
    plan = shown(browser, site, "the plan of the two", lambda s: bool(s["picked"]), "#plan tbody td.agent")
    assert plan["picked"] == ["dma-01", "dma-02"]

    browser.find_element(By.ID, "address").send_keys("10.9.9.9")
    click(browser, "add-address")
    click(browser, "preview")
    refused = shown(browser, site, "the refusal", lambda s: bool(s["message"]))
    assert refused["message"].startswith("502 agent_failed: "), refused
    assert "\n" not in refused["message"]


def test_an_admin_changes_the_default_failover_policy_and_the_next_plan_uses_it(
        browser: Any, site: Site, later: str, database: str, screenshots: Screenshots) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.select import Select

    browser.get(site.page("settings", Role.ADMIN))
    shown(browser, site, "the settings", lambda s: s["ready"])
    try:
        Select(browser.find_element(By.ID, "policy")).select_by_visible_text(BACKUP_FIRST)
        click(browser, "save")
        saved = shown(browser, site, "the saved setting", lambda s: s["message"].startswith("Saved"))
        assert saved["message"] == "Saved: failover-default-policy = backup-first.", saved
        screenshots.take(browser, "settings", database)
        browser.find_element(By.ID, "delay").clear()
        browser.find_element(By.ID, "delay").send_keys("9999")
        click(browser, "save")
        refused = shown(browser, site, "the refused value", lambda s: s["message"].startswith("422"))
        assert refused["message"] == "422 invalid_input: delayed-start-seconds must be 0..3600, got '9999'", refused

        browser.get(site.page(f"upgrade?cluster={CLUSTER}", Role.ADMIN))
        window = shown(browser, site, "the Upgrade window", lambda s: s["ready"])
        assert window["message"] == "", window
        browser.find_element(By.XPATH, "//summary[text()='Advanced Failover options']").click()
        default = Select(browser.find_element(By.ID, "policy")).first_selected_option.text
        assert default == f"Default policy ({BACKUP_FIRST})"
        click(browser, "preview")
        shown(browser, site, "the plan preview", lambda s: len(s["picked"]) == 5, "#plan tbody td.agent")
        facts = browser.execute_script(
            "return Object.fromEntries([...document.querySelectorAll('#plan-facts dd')].map("
            "(dd) => [dd.dataset.fact, dd.textContent]))")
        steps = browser.execute_script(
            "return Object.fromEntries([...document.querySelectorAll('#plan tbody tr')].map("
            "(tr) => [tr.dataset.agent, tr.querySelector('.steps').textContent]))")
        assert facts["Failover policy"] == BACKUP_FIRST, facts
        assert steps[BACKUP] == "upload → stop snmp → install → start → switch over", steps
    finally:
        site.api("PUT", "settings/failover-default-policy", Role.ADMIN, json={"value": "simultaneous"})


def test_a_viewer_sees_every_page_but_no_action_and_an_operator_cancels_from_the_progress_tab(
        browser: Any, site: Site, later: str, database: str, screenshots: Screenshots) -> None:
    from selenium.webdriver.common.by import By

    start_at = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    planned = site.api("POST", "rollouts", Role.OPERATOR,
                       json={"package": later, "cluster": CLUSTER, "start_at": start_at})
    try:
        browser.get(site.page("", Role.OPERATOR))
        mine = rollouts(browser, site, "the operator's controls", lambda listed: any(
            r["id"] == planned["rollout_id"] and r["controls"] for r in listed))
        assert next(r for r in mine if r["id"] == planned["rollout_id"])["controls"] == ["Cancel"]

        browser.get(site.page("", Role.VIEWER))
        viewer = shown(browser, site, "the viewer's Progress tab", lambda s: s["ready"])
        assert viewer["caller"] == "vera-viewer (viewer)"
        assert viewer["nav"] == ["Agents", "Progress", "Packages", "Audit"]
        listed = rollouts(browser, site, "the scheduled rollout", lambda listed: any(
            r["id"] == planned["rollout_id"] for r in listed))
        assert all(r["controls"] == [] for r in listed)
        assert next(r for r in listed if r["id"] == planned["rollout_id"])["countdown"].startswith("Starts in")

        for page in ("agents", "upgrade", "settings"):
            browser.get(site.page(page, Role.VIEWER))
            seen = shown(browser, site, f"the viewer's {page} page", lambda s: s["ready"])
            assert seen["actions"] == [] and seen["inputs"] == 0, (page, seen)

        browser.get(site.page("packages", Role.VIEWER))
        packages = shown(browser, site, "both packages", lambda s: len(s["picked"]) == 2, "tr[data-package] td.agent")
        assert packages["actions"] == []
        screenshots.take(browser, "packages", database)

        browser.get(site.page("audit", Role.VIEWER))
        verdict = shown(browser, site, "the chain's verdict", lambda s: s["ready"], "#verdict p")
        assert verdict["picked"][0].startswith("The chain is intact: ")
        assert re.fullmatch(r"Head: [0-9a-f]{64}@\d+", verdict["picked"][1]), verdict
        click(browser, "download")
        exported = shown(browser, site, "the export", lambda s: bool("".join(s["picked"])), "#exported")
        assert exported["picked"][0].startswith("Downloaded audit.jsonl: ")
        screenshots.take(browser, "audit", database)

        browser.get(site.page("", Role.OPERATOR))
        rollouts(browser, site, "the Cancel control", lambda listed: any(r["controls"] for r in listed))
        browser.find_element(By.CSS_SELECTOR, f"section[data-rollout='{planned['rollout_id']}'] "
                                              "button[data-command='cancel']").click()
        browser.switch_to.alert.accept()
        cancelled = shown(browser, site, "the cancellation", lambda s: s["message"].startswith("Cancel:"))
        assert cancelled["message"] == f"Cancel: rollout {planned['rollout_id']} is now Cancelled.", cancelled
        after = rollouts(browser, site, "the cancelled rollout's controls", lambda listed: any(
            r["id"] == planned["rollout_id"] and r["state"] == "Cancelled" for r in listed))
        assert next(r for r in after if r["id"] == planned["rollout_id"])["controls"] == ["Continue"]
    finally:
        if site.api("GET", f"rollouts/{planned['rollout_id']}", Role.VIEWER)["state"] == "Planned":
            site.api("POST", f"rollouts/{planned['rollout_id']}/cancel", Role.OPERATOR)


def test_every_page_is_served_with_the_strict_content_security_policy(site: Site) -> None:
    import httpx

    from dma_upgrade.adapters.api.page import PAGES

    for path in PAGES:
        response = httpx.get(f"{site.url}/{path}", timeout=30)
        assert response.status_code == 200, path
        policy = response.headers["Content-Security-Policy"]
        assert "script-src 'self';" in policy and "default-src 'none';" in policy, (path, policy)
        assert "<script>" not in response.text and " style=" not in response.text, path
