"""Running a real ``dma-upgrade serve`` in a subprocess on a port the OS picks (``--port 0``)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.e2e.cli import ROOT, stop_process

LISTENING = re.compile(r"API, metrics and progress page on (http://\S+)")
"""The line ``serve`` prints once its API listens, with the URL it listens on."""


@dataclass(frozen=True)
class Serving:
    """A running ``dma-upgrade serve``: where it answers and the file its output goes to."""

    url: str
    log: Path

    def output(self) -> str:
        """Everything ``serve`` printed so far (for failure messages)."""
        return self.log.read_text()


@contextmanager
def serving(log: Path, *options: str, env: dict[str, str] | None = None, database_url: str | None = None,
            timeout: float = 60.0) -> Iterator[Serving]:
    """Run ``dma-upgrade serve --port 0 OPTIONS`` logging to ``log`` until it answers ``/healthz``; stop it after.

    The environment is this process's with ``env`` on top and ``DMA_UPGRADE_DATABASE_URL`` only when
    ``database_url`` is given (as ``run_cli`` does). Stopping sends SIGTERM and kills it if it has not
    exited within 15 s.
    """
    full_env = {**os.environ, **(env or {})}
    full_env.pop("DMA_UPGRADE_DATABASE_URL", None)
    if database_url is not None:
        full_env["DMA_UPGRADE_DATABASE_URL"] = database_url
    with log.open("w") as sink:
        process = subprocess.Popen([sys.executable, "-m", "dma_upgrade", "serve", "--port", "0", *options],
                                   cwd=ROOT, env=full_env, stdout=sink, stderr=subprocess.STDOUT)
    try:
        served = Serving(_listening_url(process, log, time.monotonic() + timeout), log)
        _wait_until_healthy(process, served, time.monotonic() + timeout)
        yield served
    finally:
        stop_process(process, grace_seconds=15)


def _listening_url(process: subprocess.Popen[bytes], log: Path, deadline: float) -> str:
    """The URL ``serve`` prints once it listens; fail with its log if it exits or never prints it."""
    while time.monotonic() < deadline:
        found = LISTENING.search(log.read_text())
        if found:
            return found.group(1)
        if process.poll() is not None:
            raise AssertionError(f"serve exited {process.returncode}:\n{log.read_text()}")
        time.sleep(0.1)
    raise AssertionError(f"serve did not listen in time:\n{log.read_text()}")


def _wait_until_healthy(process: subprocess.Popen[bytes], served: Serving, deadline: float) -> None:
    """Return once ``/healthz`` answers 200; fail with the log if ``serve`` exits or never does."""
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"serve exited {process.returncode}:\n{served.output()}")
        try:
            if httpx.get(f"{served.url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{served.url}/healthz did not answer 200 in time:\n{served.output()}")
