"""A scheduled start that no engine was running for fires late once ``dma-upgrade serve`` runs, and says so.

One agent is registered and a package built and uploaded through the real CLI (simulated agent gateway); a
rollout is planned to start two seconds ahead (in this process, so no slow CLI start eats into the two
seconds) while no engine runs. Once the time has passed, ``dma-upgrade serve --no-api`` is started as a
subprocess: it takes the start up at once, and its ``RolloutStarted`` must carry the scheduled time and the
later time it started, its log the warning, and ``progress --json`` both times and the lateness.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from dma_upgrade.adapters.bootstrap import bootstrap
from dma_upgrade.adapters.clock import seconds_text, utc_text
from dma_upgrade.adapters.settings import Settings
from dma_upgrade.engine.rollout_events import (
    LATE_START_TOLERANCE_SECONDS,
    RolloutCompleted,
    RolloutStarted,
    rollout_stream_id,
)
from dma_upgrade.engine.service import AgentSelection, OptionOverrides, RolloutSpec
from tests.e2e.cli import ROOT, run_cli, stop_process
from tests.e2e.engine_cluster import CLUSTER, NEW, OLD

pytestmark = pytest.mark.slow

AHEAD = timedelta(seconds=2)
"""How far ahead the start is scheduled."""
MISSED_BY = timedelta(seconds=1.5)
"""How long after the start time the engine is started (at least: starting it takes more)."""
WAIT_SECONDS = 90.0


def _ok(env: dict[str, str], *args: str) -> str:
    result = run_cli(*args, env=env)
    assert result.returncode == 0, f"dma-upgrade {' '.join(args)}: {result.stdout}{result.stderr}"
    return result.stdout


def test_a_start_scheduled_while_no_engine_runs_fires_late_once_serve_runs_and_the_lateness_is_recorded(
        tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {"DMA_UPGRADE_DATA_DIR": str(data), "DMA_UPGRADE_ACTOR": "late-start-test",
           "DMA_UPGRADE_AGENT_GATEWAY": "simulated"}
    with ThreadPoolExecutor(max_workers=2) as pool:  # a cold CLI start takes seconds on a busy machine
        built = pool.submit(_ok, env, "packages", "build", "--version", NEW, "--output", str(tmp_path / "package"))
        _ok(env, "agents", "add", "dma-01", "--address", "10.0.0.11", "--cluster", CLUSTER, "--version", OLD)
        package = built.result().strip().splitlines()[-1]
    _ok(env, "packages", "upload", package)

    app = bootstrap(Settings(database_url=f"sqlite:///{data / 'dma-upgrade.db'}", data_dir=data))
    try:
        clock, store, service = app.clock, app.store, app.service
        start_at = clock.now() + AHEAD
        planned = service.start_rollout(RolloutSpec(
            package=service.packages()[-1].sha256, selection=AgentSelection(names=("dma-01",)),
            overrides=OptionOverrides(delayed_start=False), start_at=start_at), actor="late-start-test")
        assert planned.start_at == start_at
        while clock.now() < start_at + MISSED_BY:  # no engine runs when the start comes due
            time.sleep(0.1)

        log = tmp_path / "serve.log"
        with log.open("w") as sink:
            serve = subprocess.Popen([sys.executable, "-m", "dma_upgrade", "serve", "--no-api",
                                      "--poll-seconds", "0.2"], cwd=ROOT, env=_full_env(env), stdout=sink,
                                     stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + WAIT_SECONDS
            stream = rollout_stream_id(planned.rollout_id)
            while not any(isinstance(r.event, RolloutCompleted) for r in store.read_stream(stream)):
                assert serve.poll() is None, f"serve exited {serve.returncode}:\n{log.read_text()}"
                assert time.monotonic() < deadline, f"the rollout did not complete:\n{log.read_text()}"
                time.sleep(0.2)
        finally:
            stop_process(serve, grace_seconds=15)

        [started] = [r.event for r in store.read_stream(stream) if isinstance(r.event, RolloutStarted)]
        assert started.scheduled_at == start_at
        assert started.started_at is not None and started.started_at >= start_at + MISSED_BY
        lateness = started.lateness_seconds
        assert lateness is not None and lateness > LATE_START_TOLERANCE_SECONDS
        warning = (f"WARNING dma_upgrade.engine: scheduled start of rollout {planned.rollout_id} fired "
                   f"{seconds_text(lateness)} s late (scheduled {utc_text(start_at)})")
        assert log.read_text().count(warning) == 1, log.read_text()

        [view] = json.loads(_ok(env, "progress", str(planned.rollout_id), "--json"))
        assert view["state"] == "Completed"
        assert datetime.fromisoformat(view["start_at"]) == start_at
        assert datetime.fromisoformat(view["started_at"]) == started.started_at
        assert view["start_lateness_seconds"] == lateness
    finally:
        app.close()


def _full_env(env: dict[str, str]) -> dict[str, str]:
    """This process's environment with ``env`` on top and no database URL (the data folder's SQLite file)."""
    full = {**os.environ, **env}
    full.pop("DMA_UPGRADE_DATABASE_URL", None)
    return full
