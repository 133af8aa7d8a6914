"""Running the real ``dma-upgrade`` command line in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args: str, database_url: str | None = None, env: dict[str, str] | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``dma-upgrade ARGS`` and capture its output (never raises on a non-zero exit)."""
    full_env = {**os.environ, **(env or {})}
    full_env.pop("DMA_UPGRADE_DATABASE_URL", None)
    if database_url is not None:
        full_env["DMA_UPGRADE_DATABASE_URL"] = database_url
    full_env.setdefault("COLUMNS", "160")
    return subprocess.run([sys.executable, "-m", "dma_upgrade", *args], capture_output=True, text=True,
                          env=full_env, cwd=ROOT, timeout=timeout, check=False)


def stop_process(process: subprocess.Popen[Any], grace_seconds: float = 10) -> None:
    """SIGTERM, then SIGKILL if ``process`` has not exited within ``grace_seconds``."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(grace_seconds)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)
