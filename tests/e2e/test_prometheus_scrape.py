"""A real Prometheus server scrapes a running ``dma-upgrade serve`` during a rollout over real HTTP agents.

Three ``dma-upgrade agent-sim`` processes: ``dma-ok``; ``dma-flaky``, whose first install fails (the retry
succeeds); ``dma-broken``, whose every upload fails (its upgrade fails after the retry budget). Debian's
``prometheus`` runs on loopback with a temporary config and storage, scraping ``/metrics`` every second
and loading deploy/prometheus/alerts.yml. The test reads what arrived through Prometheus's HTTP query API.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TextIO

import httpx
import pytest
import yaml

from tests.e2e.cli import ROOT, run_cli
from tests.e2e.engine_cluster import free_port
from tests.e2e.serve import serving
from tests.tools import REQUIRE_PROMETHEUS, needed_program

pytestmark = pytest.mark.slow

CLUSTER = "north"
OLD = "10.4.0.0-14112"
NEW = "10.4.9.0-14794"
AGENTS = {"dma-ok": [], "dma-flaky": ["--fail", "install:1"], "dma-broken": ["--fail", "upload:99"]}
STEP_SECONDS = 0.4
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
DEADLINE = 180.0


@dataclass
class Processes:
    """Every subprocess the test started, each logging to its own file; all stopped at the end."""

    log_dir: Path
    running: list[tuple[subprocess.Popen[bytes], TextIO]]

    def start(self, name: str, command: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log = open(self.log_dir / f"{name}.log", "w")  # noqa: SIM115 - closed in stop_all
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        self.running.append((process, log))
        return process

    def log(self, name: str) -> str:
        return (self.log_dir / f"{name}.log").read_text()

    def stop_all(self) -> None:
        for process, log in reversed(self.running):
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(10)
            log.close()


def wait_for(url: str, process: subprocess.Popen[bytes], logs: Callable[[], str], timeout: float = 60) -> None:
    """Return once ``url`` answers 200; fail with the process's log if it exits or never does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{url}: the process exited {process.returncode}:\n{logs()}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} did not answer within {timeout:g} s:\n{logs()}")


class PrometheusApi:
    """Instant queries against a running Prometheus server."""

    def __init__(self, url: str) -> None:
        self.url = url

    def query(self, expr: str) -> dict[frozenset[tuple[str, str]], float]:
        """The result vector by labels (without job and instance)."""
        answer = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10).json()
        assert answer["status"] == "success", answer
        return {frozenset((k, v) for k, v in sample["metric"].items() if k not in ("job", "instance")):
                float(sample["value"][1]) for sample in answer["data"]["result"]}

    def value(self, expr: str) -> float | None:
        """The single value of a query, or None when it has no result."""
        result = self.query(expr)
        assert len(result) <= 1, result
        return next(iter(result.values()), None)


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    (tmp_path / "logs").mkdir()
    started = Processes(tmp_path / "logs", [])
    yield started
    started.stop_all()


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "dma_upgrade", *args]


def prepare(processes: Processes, tmp_path: Path, database_url: str, env: dict[str, str]) -> str:
    """Start the agent simulators, register them and upload a package; return the package's file name."""
    def ok(*args: str) -> str:
        result = run_cli(*args, database_url=database_url, env=env)
        assert result.returncode == 0, f"dma-upgrade {' '.join(args)}: {result.stdout}{result.stderr}"
        return result.stdout

    addresses = {name: f"127.0.0.1:{free_port()}" for name in AGENTS}
    sims = {name: processes.start(name, cli_command(
        "agent-sim", "--port", addresses[name].rpartition(":")[2], "--name", name, "--cluster", CLUSTER, "--version",
        OLD, "--step-seconds", str(STEP_SECONDS), "--state-dir", str(tmp_path / "sims" / name), *fail))
        for name, fail in AGENTS.items()}
    for name, sim in sims.items():
        wait_for(f"http://{addresses[name]}/health", sim, partial(processes.log, name))
    with ThreadPoolExecutor(max_workers=1) as pool:  # the build touches no database: it runs beside the rest
        built = pool.submit(ok, "packages", "build", "--version", NEW, "--output", str(tmp_path / "package"))
        for name, address in addresses.items():
            ok("agents", "add", name, "--address", address, "--cluster", CLUSTER, "--version", OLD)
        path = built.result().strip().splitlines()[-1]
    ok("packages", "upload", path)
    return Path(path).name


def start_prometheus(processes: Processes, tmp_path: Path, target: str) -> PrometheusApi:
    """Debian's prometheus on a free loopback port, scraping ``target`` every second, with the alert rules."""
    program = needed_program("prometheus", required_by=REQUIRE_PROMETHEUS, install="apt-get install prometheus")
    config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
              "rule_files": [str(ALERTS)],
              "scrape_configs": [{"job_name": "dma-upgrade", "static_configs": [{"targets": [target]}]}]}
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    url = f"http://127.0.0.1:{free_port()}"
    server = processes.start("prometheus", [program, f"--config.file={tmp_path / 'prometheus.yml'}",
                                            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                                            f"--web.listen-address={url.removeprefix('http://')}"])
    wait_for(f"{url}/-/ready", server, lambda: processes.log("prometheus"))
    return PrometheusApi(url)


def eventually(check: Callable[[], bool], what: Callable[[], str], timeout: float = DEADLINE) -> None:
    """Poll ``check`` (a real server's state) until it holds; else fail, saying ``what()`` was awaited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise AssertionError(f"not within {timeout:g} s: {what()}")


def test_prometheus_scrapes_serve_during_a_rollout_and_gets_the_expected_values(
        processes: Processes, tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path / 'dma-upgrade.db'}"
    env = {"DMA_UPGRADE_DATA_DIR": str(tmp_path / "data"), "DMA_UPGRADE_ACTOR": "prometheus-test"}
    package = prepare(processes, tmp_path, database_url, env)
    with serving(tmp_path / "logs" / "serve.log", "--host", "127.0.0.1", "--poll-seconds", "0.2",
                 env={**env, "DMA_UPGRADE_AGENT_GATEWAY": "http"}, database_url=database_url) as serve:
        prometheus = start_prometheus(processes, tmp_path, serve.url.removeprefix("http://"))
        eventually(lambda: prometheus.value('up{job="dma-upgrade"}') == 1, lambda: "a first successful scrape")

        started = run_cli("upgrade", "start", "--package", package, "--all-agents-in-cluster", CLUSTER,
                          "--no-delayed-start", "--max-concurrent", "3", "--max-errors", "2",
                          database_url=database_url, env=env)
        assert started.returncode == 0, started.stdout + started.stderr

        eventually(lambda: prometheus.value('dma_upgrade_rollouts{state="Failed"}') == 1,
                   lambda: f"the rollout ending failed, as scraped\n{serve.output()}")
        during = {  # seen by some scrape while the rollout ran (1: true)
            'max_over_time(dma_upgrade_rollouts{state="Running"}[10m])': 1,
            'max_over_time(dma_upgrade_agent_upgrades{state="Installing"}[10m]) >= bool 1': 1,
            'max_over_time(dma_upgrade_pending_timers{kind="retry-backoff"}[10m]) >= bool 1': 1,
        }
        at_the_end = {
            'dma_upgrade_agent_upgrades{state="Completed"}': 2,
            'dma_upgrade_agent_upgrades{state="Failed"}': 1,
            'dma_upgrade_agent_upgrade_transitions_total{state="Scheduled"}': 3,
            'dma_upgrade_agent_upgrade_transitions_total{state="Completed"}': 2,
            'dma_upgrade_agent_upgrade_transitions_total{state="Failed"}': 1,
            'dma_upgrade_step_attempts_total{step="install"}': 3,
            'dma_upgrade_step_failures_total{step="install"}': 1,
            'dma_upgrade_step_failures_total{step="upload"}': 3,
            'dma_upgrade_agent_upgrade_failures_total{step="upload"}': 1,
            'dma_upgrade_step_duration_seconds_count{step="install", outcome="succeeded"}': 2,
            'dma_upgrade_agent_upgrade_duration_seconds_count': 2,
            f'dma_upgrade_agents{{version="{NEW}"}}': 2,
            f'dma_upgrade_agents{{version="{OLD}"}}': 1,
            'dma_upgrade_clusters_on_mixed_versions': 1,
            'max(dma_upgrade_projection_lag_events)': 0,
            'dma_upgrade_hash_chain_intact': 1,
            'dma_upgrade_hash_chain_verified_position - dma_upgrade_event_store_head_position': 0,
            'sum(dma_upgrade_pending_timers)': 0,
        }
        expected = {**during, **at_the_end}

        def values() -> dict[str, float | None]:
            return {expr: prometheus.value(expr) for expr in expected}

        eventually(lambda: values() == expected, lambda: f"expected {expected}, Prometheus has {values()}")
        installs = prometheus.value('dma_upgrade_step_duration_seconds_sum{step="install", outcome="succeeded"}')
        assert installs is not None and installs >= 2 * STEP_SECONDS
        rules = httpx.get(f"{prometheus.url}/api/v1/rules", timeout=10).json()["data"]["groups"]
        assert {rule["name"]: rule["health"] for group in rules for rule in group["rules"]} == dict.fromkeys(
            [rule["alert"] for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]], "ok")

