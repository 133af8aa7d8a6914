"""One driver per rollout: ``serve`` and ``upgrade start --wait`` (or ``upgrade run``) race for a rollout, both
ways round, on SQLite and PostgreSQL. Whoever holds the rollout's lease drives it; the other follows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.cli import ROOT, run_cli, stop_process
from tests.e2e.serve import serving

PACKAGE = "DataMiner 10.4.9.0-14794 Full Upgrade.dmupgrade"
AGENTS = ("dma-01", "dma-02", "dma-03")


@pytest.fixture
def setup(db_url: str, tmp_path: Path) -> dict[str, str]:
    """Three simulated agents whose steps take a moment, and an uploaded package; the environment to use."""
    env = {"DMA_UPGRADE_DATA_DIR": str(tmp_path / "data"), "DMA_UPGRADE_SIMULATED_STEP_SECONDS": "0.3",
           "DMA_UPGRADE_ACTOR": "operator"}
    for number, name in enumerate(AGENTS, start=1):
        _ok(db_url, env, "agents", "add", name, "--address", f"10.0.0.{number}", "--cluster", "north",
            "--version", "10.4.0.0-14112")
    _ok(db_url, env, "packages", "build", "--version", "10.4.9.0-14794", "--output", str(tmp_path))
    _ok(db_url, env, "packages", "upload", str(tmp_path / PACKAGE))
    return env


def _ok(db_url: str, env: dict[str, str], *args: str) -> str:
    result = run_cli(*args, database_url=db_url, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def _events(db_url: str, env: dict[str, str]) -> list[dict[str, Any]]:
    lines = _ok(db_url, env, "audit", "export", "--format", "jsonl").splitlines()
    return [row for row in map(json.loads, lines) if "event_type" in row]


def _rollout_id(db_url: str, env: dict[str, str]) -> str:
    planned = [e for e in _events(db_url, env) if e["event_type"] == "RolloutPlanned"]
    assert len(planned) == 1
    return str(planned[0]["stream_id"]).removeprefix("rollout-")


def _wait_for(db_url: str, env: dict[str, str], event_type: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not any(e["event_type"] == event_type for e in _events(db_url, env)):
        assert time.monotonic() < deadline, f"no {event_type} within {timeout:g} s"
        time.sleep(0.2)


def _driven_once_by_one_engine(db_url: str, env: dict[str, str]) -> str:
    """Every step succeeded once, every upgrade event came from one engine process, none was 'resumed'."""
    events = _events(db_url, env)
    upgrade_events = [e for e in events if str(e["stream_id"]).startswith("upgrade-")]
    assert not [e for e in upgrade_events if e["event_type"] == "AgentUpgradeResumed"]
    succeeded = Counter((e["stream_id"], e["payload"]["step"]) for e in upgrade_events
                        if e["event_type"] == "StepSucceeded")
    assert succeeded and set(succeeded.values()) == {1}, succeeded
    assert sum(e["event_type"] == "AgentUpgradeCompleted" for e in upgrade_events) == len(AGENTS)
    drivers = {e["actor"] for e in upgrade_events} | {e["actor"] for e in events if e["event_type"] in (
        "RolloutStarted", "RolloutCompleted")}
    assert len(drivers) == 1, drivers
    (driver,) = drivers
    assert driver.startswith("engine:"), driver
    return driver


def test_upgrade_start_wait_drives_under_its_lease_and_serve_started_later_leaves_it_alone(
        db_url: str, tmp_path: Path, setup: dict[str, str]) -> None:
    env = {**os.environ, **setup, "DMA_UPGRADE_DATABASE_URL": db_url, "COLUMNS": "160"}
    waiting = subprocess.Popen(
        [sys.executable, "-m", "dma_upgrade", "upgrade", "start", "--package", PACKAGE,
         "--all-agents-in-cluster", "north", "--no-delayed-start", "--wait"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(db_url, setup, "RolloutStarted")
        with serving(tmp_path / "serve.log", "--poll-seconds", "0.2", env=setup, database_url=db_url) as served:
            out, err = waiting.communicate(timeout=120)
            assert waiting.returncode == 0, out + err
            log = served.output()
    finally:
        if waiting.poll() is None:
            stop_process(waiting)
    assert "Completed" in out
    driver = _driven_once_by_one_engine(db_url, setup)
    assert "Traceback" not in log and "cannot" not in log, log
    engines = _ok(db_url, setup, "engines")
    assert driver.removeprefix("engine:") not in engines  # the CLI's engine left when it ended


def test_upgrade_start_wait_with_serve_already_running_has_one_driver_whoever_claims_first(
        db_url: str, tmp_path: Path, setup: dict[str, str]) -> None:
    with serving(tmp_path / "serve.log", "--poll-seconds", "0.05", env=setup, database_url=db_url) as served:
        done = run_cli("upgrade", "start", "--package", PACKAGE, "--all-agents-in-cluster", "north",
                       "--no-delayed-start", "--wait", database_url=db_url, env=setup, timeout=120)
        log = served.output()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Completed" in done.stdout
    _driven_once_by_one_engine(db_url, setup)
    assert "Traceback" not in log and "cannot" not in log and "taken over" not in log, log


def test_upgrade_run_follows_a_rollout_serve_drives_and_exits_by_its_outcome(
        db_url: str, tmp_path: Path, setup: dict[str, str]) -> None:
    with serving(tmp_path / "serve.log", "--poll-seconds", "0.2", env=setup, database_url=db_url) as served:
        _ok(db_url, setup, "upgrade", "start", "--package", PACKAGE, "--all-agents-in-cluster", "north",
            "--no-delayed-start")
        _wait_for(db_url, setup, "RolloutStarted")
        rollout_id = _rollout_id(db_url, setup)
        followed = run_cli("upgrade", "run", rollout_id, database_url=db_url, env=setup, timeout=120)
        log = served.output()
    assert followed.returncode == 0, followed.stdout + followed.stderr
    assert "Completed" in followed.stdout
    _driven_once_by_one_engine(db_url, setup)
    assert "Traceback" not in log and "cannot" not in log, log
    assert "taken over" not in log, log


def _serve(db_url: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    full = {**os.environ, **env, "DMA_UPGRADE_DATABASE_URL": db_url}
    with log.open("w") as sink:
        return subprocess.Popen([sys.executable, "-m", "dma_upgrade", "serve", "--no-api", "--poll-seconds",
                                 "0.2"], cwd=ROOT, env=full, stdout=sink, stderr=subprocess.STDOUT)


def test_sigterm_during_a_delayed_start_stops_at_once_and_the_restart_keeps_the_due_time(
        db_url: str, tmp_path: Path, setup: dict[str, str]) -> None:
    delay = 20
    _ok(db_url, setup, "settings", "set", "delayed-start-seconds", str(delay))
    _ok(db_url, setup, "upgrade", "start", "--package", PACKAGE, "--agent", "dma-01")
    first = _serve(db_url, setup, tmp_path / "serve-1.log")
    try:
        _wait_for(db_url, setup, "StepDelayed")
        first.terminate()
        try:
            first.wait(timeout=delay / 2)  # well before the delay is over: the wait was cut short
        except subprocess.TimeoutExpired:
            pytest.fail(f"serve did not stop during a {delay} s delayed start:\n"
                        + (tmp_path / "serve-1.log").read_text())
    finally:
        stop_process(first)
    log = (tmp_path / "serve-1.log").read_text()
    assert first.returncode == 0, log
    assert "taken over" not in log and "Traceback" not in log, log
    assert not any(e["event_type"] == "StepStarted" and e["payload"]["step"] == "start"
                   for e in _events(db_url, setup))  # it stopped waiting; it did not start early

    second = _serve(db_url, setup, tmp_path / "serve-2.log")
    try:
        _wait_for(db_url, setup, "RolloutCompleted", timeout=delay * 3)
    finally:
        stop_process(second)
    events = _events(db_url, setup)
    assert sum(e["event_type"] == "StepDelayed" for e in events) == 1  # the restart waited for the recorded due time
    started = next(e for e in events if e["event_type"] == "StepStarted" and e["payload"]["step"] == "start")
    due = next(e for e in events if e["event_type"] == "StepDelayed")["payload"]["due_at"]
    assert _instant(started["recorded_at"]) >= _instant(due)


def _instant(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
