"""The SRE assets in deploy/: the alert rules pass ``promtool check rules`` and their ``promtool test rules``
unit tests, the dashboard's queries are valid PromQL, and every metric they name exists in a real scrape."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from dma_upgrade.adapters.sql.leases import SqlLeases
from dma_upgrade.engine.commands import CancelRollout
from tests.conftest import FakeClock
from tests.e2e.cli import ROOT
from tests.exposition import Scrape
from tests.integration.metrics_harness import AGENTS, Wired, run_with_failures
from tests.integration.rollout_harness import ACTOR
from tests.tools import REQUIRE_PROMETHEUS, needed_program

ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
ALERT_TESTS = ROOT / "deploy" / "prometheus" / "alerts_test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "dma-upgrade.json"
NEXT_VERSION = "10.4.10.0-15001"
METRIC_NAME = re.compile(r"\bdma_upgrade_[a-z0-9_]*[a-z0-9]\b")


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    """Run Debian's ``promtool`` (``.ci/run`` installs the prometheus package when it is missing)."""
    program = needed_program("promtool", required_by=REQUIRE_PROMETHEUS, install="apt-get install prometheus")
    return subprocess.run([program, *args], capture_output=True, text=True, timeout=120, check=False)


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]]


def dashboard_queries() -> list[str]:
    def walk(node: Any) -> Iterator[str]:
        if isinstance(node, dict):
            if isinstance(node.get("expr"), str):
                yield node["expr"]
            for value in node.values():
                yield from walk(value)
        elif isinstance(node, list):
            for item in node:
                yield from walk(item)
    return list(walk(json.loads(DASHBOARD.read_text())))


def test_promtool_check_rules_accepts_the_alert_rules() -> None:
    checked = promtool("check", "rules", str(ALERTS))

    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in checked.stdout


def test_promtool_unit_tests_pass_and_show_every_alert_firing() -> None:
    tested = promtool("test", "rules", str(ALERT_TESTS))

    assert tested.returncode == 0, tested.stdout + tested.stderr
    firing = {case["alertname"] for test in yaml.safe_load(ALERT_TESTS.read_text())["tests"]
              for case in test["alert_rule_test"] if case["exp_alerts"]}
    assert firing == {rule["alert"] for rule in alert_rules()}


def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    queries = dashboard_queries()
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query_{n}", "expr": query.replace("$__rate_interval", "5m")}
        for n, query in enumerate(queries)]}]}
    (tmp_path / "dashboard-rules.yml").write_text(yaml.safe_dump(rules))

    checked = promtool("check", "rules", str(tmp_path / "dashboard-rules.yml"))

    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert len(queries) >= 20


@pytest.fixture
def full_scrape(wired: Wired, clock: FakeClock) -> Scrape:
    """A scrape with every series present: a rollout with failures, a scheduled one, projections caught up,
    the chain verified."""
    failed = run_with_failures(wired)
    wired.harness.service.control(CancelRollout(failed), actor=ACTOR)
    package = wired.harness.upload(NEXT_VERSION)
    wired.harness.start(package=package, names=AGENTS, start_at=clock.now() + timedelta(hours=1))
    wired.container.projections.catch_up()
    wired.metrics.chain.verify_new()
    wired.metrics.with_engine(SqlLeases(wired.container.engine, clock, owner="test/engine"), lambda: 0)
    return wired.scrape()


def test_every_metric_the_dashboard_and_the_alerts_name_exists_in_a_real_scrape(full_scrape: Scrape) -> None:
    named = {name for text in [*dashboard_queries(), *(rule["expr"] for rule in alert_rules())]
             for name in METRIC_NAME.findall(text)}

    assert named - full_scrape.names() == set()
    assert len(named) >= 20


def test_the_dashboard_shows_every_metric_family_the_process_exposes(full_scrape: Scrape) -> None:
    shown = {name for query in dashboard_queries() for name in METRIC_NAME.findall(query)}
    families = {family for family in full_scrape.families
                if family.startswith("dma_upgrade_") and not family.endswith("_created")}  # counters' start times

    unshown = {family for family in families
               if not any(re.fullmatch(f"{family}(_total|_bucket|_count|_sum)?", name) for name in shown)}

    assert unshown == set()
    assert len(families) >= 20
