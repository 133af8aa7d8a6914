"""``upgrade continue`` and a rollout of several clusters, through the real CLI (SQLite and PostgreSQL)."""

from __future__ import annotations

import re
from pathlib import Path

from tests.e2e.cli import run_cli

PACKAGE = "DataMiner 10.4.9.0-14794 Full Upgrade.dmupgrade"


def test_several_clusters_then_a_cancelled_rollout_continued_to_completion(db_url: str, tmp_path: Path) -> None:
    env = {"DMA_UPGRADE_DATA_DIR": str(tmp_path / "data"), "DMA_UPGRADE_ACTOR": "carol", "COLUMNS": "300"}

    def cli(*args: str, code: int = 0) -> str:
        result = run_cli(*args, database_url=db_url, env=env)
        assert result.returncode == code, result.stdout + result.stderr
        return result.stdout if code == 0 else result.stderr

    cli("agents", "add", "dma-01", "--address", "10.0.0.11", "--cluster", "north", "--version", "10.4.0.0-14112")
    cli("agents", "add", "dma-02", "--address", "10.0.0.12", "--cluster", "south", "--version", "10.4.0.0-14112")
    cli("packages", "build", "--version", "10.4.9.0-14794", "--output", str(tmp_path))
    cli("packages", "upload", str(tmp_path / PACKAGE))
    both = ("--all-agents-in-cluster", "north", "--all-agents-in-cluster", "south")
    plan = cli("upgrade", "start", "--package", PACKAGE, *both, "--dry-run")
    assert "dma-01" in plan and "dma-02" in plan
    unknown = cli("upgrade", "start", "--package", PACKAGE, "--all-agents-in-cluster", "north",
                  "--all-agents-in-cluster", "west", code=3)
    assert unknown.strip().endswith("unknown cluster 'west'") and unknown.count("\n") == 1

    started = cli("upgrade", "start", "--package", PACKAGE, *both, "--no-delayed-start")
    match = re.search(r"Rollout ([0-9a-f-]{36}) started", started)
    assert match is not None, started
    rollout = match.group(1)
    assert "only a failed or cancelled rollout can be continued" in cli("upgrade", "continue", rollout, code=5)
    cli("upgrade", "cancel", rollout)
    assert "available" in cli("packages", "list")  # no agent began installing it

    assert "continue recorded, now Running" in cli("upgrade", "continue", rollout)
    assert "Completed" in cli("upgrade", "run", rollout)

    listing = cli("agents", "list")
    assert listing.count("10.4.9.0-14794") == 2
    history = cli("history", "packages")
    assert "completed" in history and "first used" in history and "continued" in history and "by carol" in history
    refused = cli("upgrade", "continue", rollout, code=5)
    assert "every agent of it completed" in refused or "only a failed or cancelled rollout" in refused
    assert refused.count("\n") == 1
