"""Several CLI processes meeting a fresh embedded database at once all succeed (one migrates, the rest wait)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.e2e.cli import ROOT, run_cli


def test_parallel_commands_on_a_fresh_sqlite_database_all_succeed(tmp_path: Path) -> None:
    env = {**os.environ, "DMA_UPGRADE_DATA_DIR": str(tmp_path), "COLUMNS": "160"}
    env.pop("DMA_UPGRADE_DATABASE_URL", None)
    processes = [subprocess.Popen([sys.executable, "-m", "dma_upgrade", "agents", "add", f"dma-{i}",
                                   "--address", f"10.0.0.{i}", "--cluster", "north", "--version", "10.4.0.0-14112"],
                                  cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for i in range(1, 6)]
    results = [(p.wait(timeout=120), p.stderr.read() if p.stderr else "") for p in processes]
    assert all(code == 0 for code, _ in results), results
    listed = run_cli("agents", "list", env={"DMA_UPGRADE_DATA_DIR": str(tmp_path)})
    assert all(f"dma-{i}" in listed.stdout for i in range(1, 6)), listed.stdout
