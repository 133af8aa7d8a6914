"""``progress ROLLOUT --follow --output json`` through the real CLI: JSON lines (each a ``RolloutProgressOut``, one
per change, flushed as it happens) until the rollout ends, then exit 0 if it completed, else 9."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from itertools import pairwise
from pathlib import Path
from typing import Any

from dma_upgrade.adapters.shapes.models import RolloutProgressOut
from dma_upgrade.engine.rollout import ENDED_STATES
from tests.e2e.cli import ROOT, run_cli, stop_process

PACKAGE = "DataMiner 10.4.9.0-14794 Full Upgrade.dmupgrade"


class Cluster:
    """Two agents, an uploaded package and a started rollout nobody drives yet, on its own database."""

    def __init__(self, db_url: str, tmp_path: Path) -> None:
        self.db_url = db_url
        self.env = {"DMA_UPGRADE_DATA_DIR": str(tmp_path / "data"), "DMA_UPGRADE_ACTOR": "carol"}
        for number in (1, 2):
            self.ok("agents", "add", f"dma-0{number}", "--address", f"10.0.0.1{number}", "--cluster", "north",
                    "--version", "10.4.0.0-14112")
        self.ok("packages", "build", "--version", "10.4.9.0-14794", "--output", str(tmp_path))
        self.ok("packages", "upload", str(tmp_path / PACKAGE))
        started = self.ok("upgrade", "start", "--package", PACKAGE, "--all-agents-in-cluster", "north",
                          "--no-delayed-start")
        match = re.search(r"Rollout ([0-9a-f-]{36}) started", started)
        assert match is not None, started
        self.rollout = match.group(1)

    def ok(self, *args: str) -> str:
        result = run_cli(*args, database_url=self.db_url, env=self.env)
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    def follow(self) -> subprocess.Popen[str]:
        """``progress ROLLOUT --follow --output json`` running, its stdout a pipe."""
        env = {**os.environ, **self.env, "DMA_UPGRADE_DATABASE_URL": self.db_url}
        return subprocess.Popen([sys.executable, "-m", "dma_upgrade", "progress", self.rollout, "--follow",
                                 "--output", "json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=env, cwd=ROOT)


def _documents(first: str, rest: str) -> list[dict[str, Any]]:
    """Every line as a JSON document, each validated with its shape (and dumped back the same)."""
    documents = [json.loads(line) for line in [first, *rest.splitlines()]]
    for document in documents:
        assert RolloutProgressOut.model_validate(document).model_dump(mode="json") == document
    return documents


def _followed_while(cluster: Cluster, *args: str) -> tuple[int, list[dict[str, Any]], str]:
    """Follow the rollout; once its first line is out (the follower is under way), run ``args``; then the
    follower's exit code, its documents and its stderr."""
    follower = cluster.follow()
    try:
        assert follower.stdout is not None
        first = follower.stdout.readline()  # the follower printed the rollout as it stands: it follows now
        cluster.ok(*args)
        rest, errors = follower.communicate(timeout=120)
    finally:
        stop_process(follower)
    return follower.returncode, _documents(first, rest), errors


def test_following_a_rollout_to_completion_prints_a_json_line_per_change_and_exits_0(
        db_url: str, tmp_path: Path) -> None:
    cluster = Cluster(db_url, tmp_path)

    code, documents, errors = _followed_while(cluster, "upgrade", "run", cluster.rollout)

    assert code == 0, errors
    assert documents[0]["state"] not in ENDED_STATES
    assert documents[-1]["state"] == "Completed" and documents[-1]["completed"] == 2
    assert all(d["state"] not in ENDED_STATES for d in documents[:-1])
    assert {d["rollout_id"] for d in documents} == {cluster.rollout}
    assert all(earlier != later for earlier, later in pairwise(documents))


def test_following_a_rollout_that_is_cancelled_ends_with_its_cancelled_line_and_exits_9(
        db_url: str, tmp_path: Path) -> None:
    cluster = Cluster(db_url, tmp_path)

    code, documents, errors = _followed_while(cluster, "upgrade", "cancel", cluster.rollout)

    assert code == 9, errors
    assert documents[0]["state"] not in ENDED_STATES
    assert documents[-1]["state"] == "Cancelled"
