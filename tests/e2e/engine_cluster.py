"""A real cluster for crash tests: agent simulators and the engine (``dma-upgrade serve``) as subprocesses.

``ClusterRig`` holds one database URL and one data folder; it starts ``dma-upgrade agent-sim`` processes
(each on a free loopback port with a state folder of its own), registers them through the CLI, builds and
uploads a package and starts a rollout without ``--wait``. ``EngineProcessRunner`` runs ``dma-upgrade
serve`` with the HTTP gateway and kills it at will. ``StoreWatch`` tails the event store the engine writes,
so a test can kill the engine the moment a given event is recorded.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import httpx

from dma_upgrade.adapters.clock import SystemClock
from dma_upgrade.adapters.sql.database import create_db_engine
from dma_upgrade.adapters.sql.event_store import SqlEventStore
from dma_upgrade.engine.catalog import default_codec
from dma_upgrade.engine.events import RecordedEvent
from dma_upgrade.engine.rollout_events import RolloutCompleted, RolloutFailed
from dma_upgrade.engine.upgrade_events import (
    AgentUpgradeResumed,
    AgentUpgradeScheduled,
    StepFailed,
    StepStarted,
    StepSucceeded,
)
from tests.e2e.cli import ROOT, run_cli, stop_process

CLUSTER = "north"
OLD = "10.4.0.0-14112"
NEW = "10.4.9.0-14794"
MAIN = "dma-main"
BACKUP = "dma-backup"
PLAIN = ("dma-01", "dma-02", "dma-03")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "dma_upgrade", *args]


class AgentSimProcess:
    """``dma-upgrade agent-sim`` for one agent, in a subprocess that can be killed and started again."""

    def __init__(self, name: str, state_dir: Path, log_dir: Path, step_seconds: float) -> None:
        self.name = name
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.state_dir = state_dir
        self.log_dir = log_dir
        self.step_seconds = step_seconds
        self.process: subprocess.Popen[bytes] | None = None
        self._log: TextIO | None = None
        self.starts = 0

    def start(self, *extra: str) -> None:
        """Start the process (``extra``: more agent-sim options, e.g. ``--fail install:1``) and wait for it."""
        self.launch(*extra)
        self.wait_healthy()

    def launch(self, *extra: str) -> None:
        """Start the process without waiting for it to answer."""
        self.starts += 1
        self._close_log()
        self._log = open(self.log_dir / f"sim-{self.name}-{self.starts}.log", "w")  # noqa: SIM115
        self.process = subprocess.Popen(
            _cli_command("agent-sim", "--port", str(self.port), "--name", self.name, "--cluster", CLUSTER,
                         "--version", OLD, "--step-seconds", str(self.step_seconds),
                         "--state-dir", str(self.state_dir), *extra),
            cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT)

    def wait_healthy(self, timeout: float = 60) -> None:
        """Return once the simulator answers ``/health``."""
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"agent-sim {self.name} exited {self.process.returncode}: {self.log()}")
            try:
                if httpx.get(f"http://{self.address}/health", timeout=0.5).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.05)
        raise AssertionError(f"agent-sim {self.name} did not answer /health within {timeout:g} s")

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
        self._close_log()

    def freeze(self) -> None:
        """SIGSTOP: the agent hangs mid-whatever (its connections stay open, nothing answers) until ``thaw``."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def journal(self) -> list[dict[str, Any]]:
        response = httpx.get(f"http://{self.address}/journal", timeout=5)
        response.raise_for_status()
        return list(response.json())

    def log(self) -> str:
        path = self.log_dir / f"sim-{self.name}-{self.starts}.log"
        return path.read_text() if path.exists() else ""

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


class EngineProcessRunner:
    """``dma-upgrade serve`` with the HTTP gateway, one subprocess per life; every life logs to its own file."""

    def __init__(self, env: dict[str, str], log_dir: Path, poll_seconds: float = 0.2, name: str = "engine") -> None:
        self.env = env
        self.log_dir = log_dir
        self.poll_seconds = poll_seconds
        self.name = name
        self.process: subprocess.Popen[bytes] | None = None
        self.lives = 0
        self._log: TextIO | None = None

    def start(self) -> None:
        assert self.process is None or self.process.poll() is not None, "the engine is already running"
        self.lives += 1
        self._close_log()
        self._log = open(self.log_dir / f"{self.name}-{self.lives}.log", "w")  # noqa: SIM115
        command = _cli_command("serve", "--poll-seconds", str(self.poll_seconds), "--port", "0")
        self.process = subprocess.Popen(command, cwd=ROOT, env=self.env, stdout=self._log, stderr=subprocess.STDOUT)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def pause(self) -> None:
        """SIGSTOP: the process hangs (no heartbeat, no work) until ``resume``."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> int | None:
        """Ask the engine to stop (SIGTERM, as Ctrl-C); SIGKILL it if it does not within 10 s."""
        if self.process is None:
            return None
        stop_process(self.process)
        self._close_log()
        return self.process.returncode

    def logs(self) -> str:
        return "\n".join(f"--- {self.name} life {n} ---\n" + (self.log_dir / f"{self.name}-{n}.log").read_text()
                         for n in range(1, self.lives + 1) if (self.log_dir / f"{self.name}-{n}.log").exists())

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


@dataclass
class StoreWatch:
    """Tails the event store the engine writes: every event read so far, in global order."""

    database_url: str
    events: list[RecordedEvent] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._engine = create_db_engine(self.database_url)
        self._store = SqlEventStore(self._engine, default_codec(), SystemClock())

    @property
    def position(self) -> int:
        return self.events[-1].position if self.events else 0

    def poll(self) -> list[RecordedEvent]:
        """The events recorded since the last poll."""
        new = list(self._store.read_all(after=self.position))
        self.events.extend(new)
        return new

    def close(self) -> None:
        self._engine.dispose()

    # -- questions about what was read -----------------------------------------------------------

    def agent_of(self) -> dict[str, str]:
        """Upgrade stream id -> agent name."""
        return {r.stream_id: r.event.agent for r in self.events if isinstance(r.event, AgentUpgradeScheduled)}

    def planned_steps(self) -> dict[str, list[str]]:
        """Agent name -> the steps its upgrade plan lists."""
        return {r.event.agent: [step.value for step in r.event.plan.steps]
                for r in self.events if isinstance(r.event, AgentUpgradeScheduled)}

    def installing(self) -> set[str]:
        """Agents whose install was started (recorded) and has not ended (recorded)."""
        agents = self.agent_of()
        busy: set[str] = set()
        for r in self.events:
            event = r.event
            if isinstance(event, StepStarted) and event.step.value == "install":
                busy.add(agents.get(r.stream_id, r.stream_id))
            elif isinstance(event, StepSucceeded | StepFailed) and event.step.value == "install":
                busy.discard(agents.get(r.stream_id, r.stream_id))
        return busy

    def rollout_ended(self) -> bool:
        return any(isinstance(r.event, RolloutCompleted | RolloutFailed) for r in self.events)

    def resumes(self) -> Counter[str]:
        agents = self.agent_of()
        return Counter(agents.get(r.stream_id, r.stream_id) for r in self.events
                       if isinstance(r.event, AgentUpgradeResumed))


def is_progress(recorded: RecordedEvent) -> bool:
    """An event that moves an upgrade on (not the bookkeeping a starting engine records)."""
    return not isinstance(recorded.event, AgentUpgradeResumed) and recorded.stream_id.startswith("upgrade-")


def is_step(recorded: RecordedEvent, kind: type, step: str) -> bool:
    return isinstance(recorded.event, kind) and getattr(recorded.event, "step", None) is not None \
        and recorded.event.step.value == step  # type: ignore[attr-defined]


class ClusterRig:
    """One database and data folder, five simulated agents (a main/backup pair), a package, the CLI."""

    def __init__(self, database_url: str, tmp_path: Path, *, step_seconds: float) -> None:
        self.database_url = database_url
        self.tmp_path = tmp_path
        self.data_dir = tmp_path / "data"
        self.log_dir = tmp_path / "logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.sims = {name: AgentSimProcess(name, tmp_path / "agent-sim" / name, self.log_dir, step_seconds)
                     for name in (*PLAIN, MAIN, BACKUP)}
        self.rollout_id: str | None = None

    @property
    def env(self) -> dict[str, str]:
        return {"DMA_UPGRADE_DATA_DIR": str(self.data_dir), "DMA_UPGRADE_ACTOR": "crash-test"}

    def engine_env(self) -> dict[str, str]:
        full = {**os.environ, **self.env, "DMA_UPGRADE_DATABASE_URL": self.database_url,
                "DMA_UPGRADE_AGENT_GATEWAY": "http"}
        return full

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return run_cli(*args, database_url=self.database_url, env=self.env, timeout=timeout)

    def ok(self, *args: str) -> str:
        result = self.cli(*args)
        assert result.returncode == 0, f"dma-upgrade {' '.join(args)}: {result.stdout}{result.stderr}"
        return result.stdout

    def prepare(self) -> str:
        """Start the simulators, register them and build and upload a package (at once where possible).

        Returns the package's file name. Every command is the real CLI in a subprocess; they run side by
        side because a cold CLI start takes seconds on a busy machine.
        """
        with ThreadPoolExecutor(max_workers=8) as pool:
            for sim in self.sims.values():
                sim.launch()
            built = pool.submit(self.ok, "packages", "build", "--version", NEW, "--output",
                                str(self.tmp_path / "package"))
            registered = [pool.submit(self.ok, *args) for args in self.registrations()]
            for sim in self.sims.values():
                sim.wait_healthy()
            for done in registered:
                done.result()
            path = built.result().strip().splitlines()[-1]
        self.ok("packages", "upload", path)
        return Path(path).name

    def registrations(self) -> list[tuple[str, ...]]:
        """The ``agents add`` command lines of the five agents."""
        commands: list[tuple[str, ...]] = [
            ("agents", "add", name, "--address", self.sims[name].address, "--cluster", CLUSTER, "--version", OLD)
            for name in PLAIN]
        for name, partner, role in ((MAIN, BACKUP, "main"), (BACKUP, MAIN, "backup")):
            commands.append(("agents", "add", name, "--address", self.sims[name].address, "--cluster", CLUSTER,
                             "--version", OLD, "--failover-partner", partner, "--failover-role", role))
        return commands

    def stop_agents(self) -> None:
        for sim in self.sims.values():
            sim.stop()

    def start_rollout(self, package: str) -> str:
        out = self.ok("upgrade", "start", "--package", package, "--all-agents-in-cluster", CLUSTER,
                      "--failover-policy", "backup-first", "--no-delayed-start")
        found = re.search(r"Rollout ([0-9a-f-]{36}) started", out)
        assert found, out
        self.rollout_id = found.group(1)
        return self.rollout_id

    def progress(self) -> list[dict[str, Any]]:
        return list(json.loads(self.ok("progress", "--json")))

    def agent_versions(self) -> dict[str, str]:
        """``agents list`` as agent name -> version (read from the table the command prints)."""
        versions: dict[str, str] = {}
        for line in self.ok("agents", "list").splitlines():
            cells = [cell.strip() for cell in line.split("│")]
            if len(cells) >= 6 and cells[1] in self.sims:
                versions[cells[1]] = cells[4]
        return versions
