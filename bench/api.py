"""Benchmark of the HTTP API under a large fleet: ``/metrics`` and progress latency from another process.

Setup (timed and reported apart): a fresh SQLite store with ``--agents`` agents registered with their
facts (clusters of ``CLUSTER_SIZE``), ``--history`` finished whole-cluster rollouts, and ``--in-flight``
agent upgrades in flight: whole-cluster rollouts started, every agent's upgrade scheduled and cut at a
seeded random point before completion (steps done, a step or an install phase in flight, a delayed
start pending). Written in bulk with ``bench.replay``'s ``LogWriter`` (``build_records``: stream
versions and hash chain as an append writes them).

Then, as separate processes on loopback:

- the **server**: ``bench/api.py --serve``, which wires the API as ``dma-upgrade serve`` does (the
  container, ``adapters.metrics.instrument``, a token file, ``create_app`` on ``ApiServer``) and keeps
  the projections caught up in a follower thread; it announces its port once the projections caught
  up. No engine runs, so the upgrades stay in flight while measured.
- the **client**: ``bench/api.py --client``, one ``httpx.Client`` (keep-alive) with a viewer token,
  sending ``--requests`` sequential requests per endpoint after ``WARMUP`` unmeasured ones, and
  reporting each request's latency. ``/healthz`` (no database) is the baseline floor.
- the **engine's writes**, played back from this process while the client runs: the rest of each
  upgrade in flight (the events it would append next), appended through ``SqlEventStore`` at
  ``--write-rate`` events a second, so the server's projections and caches have new work on every poll.

    python bench/api.py [--agents 10000] [--in-flight 500] [--history 20] [--requests 300] [--write-rate 20]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import zip_longest
from pathlib import Path
from uuid import UUID, uuid4

if __package__ in (None, ""):  # run as a script: make the project root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx

from bench._common import Measurement, print_table, progress, ratio
from bench.replay import (
    ENGINE_ACTOR,
    OPERATOR,
    Agent,
    HistoryStats,
    LogWriter,
    register_agents,
    run_rollout,
    upgrade_appends,
    upload_package,
)
from dma_upgrade.engine.agent_upgrade import upgrade_stream_id
from dma_upgrade.engine.events import Event
from dma_upgrade.engine.rollout_events import (
    CLAIMS_STREAM,
    FailoverPolicy,
    PackageUsed,
    PlannedAgent,
    RolloutClaimed,
    RolloutPlanned,
    RolloutStarted,
    package_stream_id,
    rollout_stream_id,
)
from dma_upgrade.engine.upgrade_events import AgentUpgradePlan, AgentUpgradeScheduled, UpgradeOptions

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SEED = 20_261_130
CLUSTER_SIZE = 50
WARMUP = 20
TARGET_P99_MS = 100.0
DELAYED_START_SECONDS = 60


# -- the store ---------------------------------------------------------------------------------


def make_agents(count: int) -> list[Agent]:
    """``count`` agents in clusters of ``CLUSTER_SIZE``."""
    return [Agent(name=f"dma-{i // CLUSTER_SIZE:03d}-{i % CLUSTER_SIZE:02d}",
                  address=f"10.{i // 250}.{i % 250}.{i // 62500 + 10}", cluster=f"cluster-{i // CLUSTER_SIZE:03d}",
                  version="10.4.0.0-14112", dataminer_id=i + 1) for i in range(count)]


@dataclass(frozen=True)
class Pending:
    """What an upgrade in flight appends next, had the engine gone on: its stream, events and rollout."""

    stream_id: str
    events: list[Event]
    rollout_id: UUID


def start_in_flight(log: LogWriter, agents: Sequence[Agent], number: int,
                    rng: random.Random) -> tuple[UUID, list[Pending]]:
    """A started whole-cluster rollout whose every upgrade stops at a random point before completion;
    with the rest of each upgrade's appends, interleaved as the engine would make them."""
    sha256, version = upload_package(log, number)
    rollout_id = log.new_id()
    options = UpgradeOptions(delayed_start=True)
    plan = AgentUpgradePlan(options=options, delayed_start_seconds=DELAYED_START_SECONDS)
    planned = RolloutPlanned(
        rollout_id=rollout_id, package_sha256=sha256, package_version=version, options=options, upload_only=False,
        failover_policy=FailoverPolicy.SIMULTANEOUS, max_concurrent=len(agents), max_errors=0,
        agents=tuple(PlannedAgent(name=a.name, address=a.address, cluster=a.cluster, current_version=a.version,
                                  upgrade_id=log.new_id(), plan=plan) for a in agents))

    def append(stream_id: str, new: list[Event], actor: str = ENGINE_ACTOR) -> None:
        log.append(stream_id, new, actor=actor, correlation_id=rollout_id)

    append(rollout_stream_id(rollout_id), [planned], OPERATOR)
    append(CLAIMS_STREAM, [RolloutClaimed(rollout_id=rollout_id, clusters=(agents[0].cluster,),
                                          agents=tuple(a.name for a in agents))], OPERATOR)
    append(package_stream_id(sha256), [PackageUsed(rollout_id=rollout_id)], OPERATOR)
    append(rollout_stream_id(rollout_id), [RolloutStarted()])
    done, rest = [], []
    for agent in planned.agents:
        append(upgrade_stream_id(agent.upgrade_id), [AgentUpgradeScheduled(
            upgrade_id=agent.upgrade_id, rollout_id=rollout_id, agent=agent.name, package_sha256=sha256,
            target_version=version, plan=agent.plan)])
        history = upgrade_appends(log, agent, planned, retried=rng.random() < 0.1, fails=False)
        cut = rng.randrange(0, len(history) - 1)  # never the completion
        done.append(history[:cut])
        rest.append(history[cut:])
    for step_appends in zip_longest(*done):
        for pending in step_appends:
            if pending is not None:
                append(*pending)
    return rollout_id, [Pending(stream_id, events, rollout_id) for step_appends in zip_longest(*rest)
                        for stream_id, events in (a for a in step_appends if a is not None)]


@dataclass
class Generated:
    """The store as generated: its events, the rollouts in flight, what they would append next, and
    every stream's version."""

    written: Measurement
    rollouts: list[UUID]
    pending: list[Pending]
    versions: dict[str, int]


def generate(url: str, agent_count: int, history: int, in_flight: int) -> Generated:
    """Fill a fresh store with the fleet, the finished rollouts and the upgrades in flight."""
    from dma_upgrade.adapters.sql.database import create_db_engine, migrate
    from dma_upgrade.engine.catalog import default_codec

    engine = create_db_engine(url)
    migrate(engine)
    rng = random.Random(SEED)
    log = LogWriter(engine, default_codec(), 10**9, rng)
    start = time.perf_counter()
    agents = make_agents(agent_count)
    register_agents(log, agents)
    clusters = [agents[i:i + CLUSTER_SIZE] for i in range(0, len(agents), CLUSTER_SIZE)]
    for number in range(history):
        run_rollout(log, clusters[number % len(clusters)], number, rng, HistoryStats(), check=False)
        log.advance(600)
    started = [start_in_flight(log, clusters[len(clusters) - 1 - n], history + n, rng)
               for n in range(-(-in_flight // CLUSTER_SIZE))]
    log.flush()
    engine.dispose()
    pending = [p for step in zip_longest(*(rest for _, rest in started)) for p in step if p is not None]
    return Generated(Measurement(log.head_position, time.perf_counter() - start), [r for r, _ in started],
                     pending, dict(log.versions))


# -- the engine's part, played back --------------------------------------------------------------


class Writer:
    """Appends the upgrades' next events at ``rate`` events a second in a thread, as a busy engine would."""

    def __init__(self, url: str, generated: Generated, rate: float) -> None:
        from dma_upgrade.adapters.bootstrap import bootstrap
        from dma_upgrade.adapters.settings import Settings

        self._app = bootstrap(Settings(database_url=url))
        self._store = self._app.store
        self._pending = generated.pending
        self._versions = dict(generated.versions)
        self._rate = rate
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._write, daemon=True)
        self.appended = 0
        self.seconds = 0.0

    def __enter__(self) -> Writer:
        if self._rate > 0:
            self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self._app.close()

    def _write(self) -> None:
        from dma_upgrade.engine.events import EventMetadata, NewEvent

        start = time.perf_counter()
        for pending in self._pending:
            if self._stop.wait(max(0.0, start + self.appended / self._rate - time.perf_counter())):
                break
            metadata = EventMetadata(actor=ENGINE_ACTOR, correlation_id=pending.rollout_id)
            self._store.append(pending.stream_id, self._versions.get(pending.stream_id, 0),
                               [NewEvent(event_id=uuid4(), event=e, metadata=metadata) for e in pending.events])
            self._versions[pending.stream_id] = self._versions.get(pending.stream_id, 0) + len(pending.events)
            self.appended += len(pending.events)
        self.seconds = time.perf_counter() - start


# -- the server process ------------------------------------------------------------------------


def serve(url: str, data_dir: Path) -> None:
    """Serve the API as ``dma-upgrade serve`` wires it (no engine); print the port, run until stdin closes."""
    from dma_upgrade.adapters.access.tokens import TokenFile
    from dma_upgrade.adapters.api.app import create_app
    from dma_upgrade.adapters.api.context import ApiContext
    from dma_upgrade.adapters.api.server import ApiServer
    from dma_upgrade.adapters.bootstrap import bootstrap
    from dma_upgrade.adapters.settings import Settings

    settings = Settings(database_url=url, data_dir=data_dir)
    container = bootstrap(settings, metrics=True)
    metrics = container.metrics
    assert metrics is not None
    server = ApiServer(create_app(ApiContext(container, TokenFile(settings.resolved_tokens_file)), metrics.registry))
    container.projections.catch_up()
    metrics.chain.verify_new()
    stop = threading.Event()

    def follow() -> None:
        while not stop.wait(1.0):
            container.projections.catch_up()
            metrics.chain.verify_new()

    threading.Thread(target=follow, daemon=True).start()
    server.start()
    print(server.port, flush=True)
    sys.stdin.read()  # the parent closes it to stop us
    stop.set()
    server.stop()
    container.close()


# -- the client process ------------------------------------------------------------------------


def client(base: str, token: str, paths: list[str], requests: int) -> None:
    """Time ``requests`` sequential GETs of each path after a warm-up; print the latencies (ms) as JSON."""
    latencies: dict[str, list[float]] = {}
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=60) as http:
        for path in paths:
            for _ in range(WARMUP):
                http.get(path).raise_for_status()
            timings = []
            for _ in range(requests):
                start = time.perf_counter()
                response = http.get(path)
                response.read()
                timings.append((time.perf_counter() - start) * 1000)
                response.raise_for_status()
            latencies[path] = timings
    print(json.dumps(latencies))


# -- the run -----------------------------------------------------------------------------------


def percentile(values: Sequence[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, default=10_000)
    parser.add_argument("--in-flight", type=int, default=500)
    parser.add_argument("--history", type=int, default=20, help="finished rollouts before the ones in flight")
    parser.add_argument("--requests", type=int, default=300, help="measured requests per endpoint")
    parser.add_argument("--write-rate", type=float, default=20.0,
                        help="events a second the upgrades in flight append while measured (0: none)")
    parser.add_argument("--serve", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--client", metavar="BASE_URL", help=argparse.SUPPRESS)
    parser.add_argument("--token", help=argparse.SUPPRESS)
    parser.add_argument("--paths", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.data_dir)
        return
    if args.client:
        client(args.client, args.token, json.loads(args.paths), args.requests)
        return
    with tempfile.TemporaryDirectory(prefix="dma-bench-api-") as tmp:
        run(Path(tmp), args)


def run(tmp: Path, args: argparse.Namespace) -> None:
    from dma_upgrade.adapters.access.tokens import Role, TokenFile

    url = f"sqlite:///{tmp / 'store.db'}"
    progress(f"generating {args.agents} agents, {args.history} finished rollouts, {args.in_flight} upgrades in flight")
    generated = generate(url, args.agents, args.history, args.in_flight)
    written, rollouts = generated.written, generated.rollouts
    progress(f"wrote {written.count} events in {written.seconds:.1f} s")
    token = TokenFile(tmp / "api-tokens.json").add("bench", Role.VIEWER)
    server_command = [sys.executable, "-m", "bench.api", "--serve", url, "--data-dir", str(tmp)]
    started = time.perf_counter()
    server = subprocess.Popen(server_command, cwd=PROJECT_ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)  # its tokens file is the default one in its data directory
    try:
        assert server.stdout is not None and server.stdin is not None
        port = int(server.stdout.readline())
        progress(f"server on port {port}, projections caught up, in {time.perf_counter() - started:.1f} s")
        one = rollouts[0]
        agent = f"dma-{(args.agents // CLUSTER_SIZE) - 1:03d}-00"
        paths = ["/healthz", "/metrics", f"/api/v1/progress/{one}", f"/api/v1/progress/{one}/agents/{agent}",
                 "/api/v1/progress"]
        with Writer(url, generated, args.write_rate) as writer:
            done = subprocess.run([sys.executable, "-m", "bench.api", "--client", f"http://127.0.0.1:{port}",
                                   "--token", token, "--paths", json.dumps(paths), "--requests", str(args.requests)],
                                  cwd=PROJECT_ROOT, stdout=subprocess.PIPE, text=True, check=True)
        latencies: dict[str, list[float]] = json.loads(done.stdout)
        progress(f"the upgrades in flight appended {writer.appended} events meanwhile "
                 f"({ratio(writer.appended, writer.seconds):.0f} a second)")
    finally:
        if server.stdin is not None:
            server.stdin.close()
        server.wait(timeout=60)
    report(args, written, latencies)


def report(args: argparse.Namespace, written: Measurement, latencies: dict[str, list[float]]) -> None:
    floor = statistics.median(latencies["/healthz"])
    rows = []
    for path, timings in latencies.items():
        p50, p99 = percentile(timings, 0.5), percentile(timings, 0.99)
        target = "baseline" if path == "/healthz" else ("ok" if p99 < TARGET_P99_MS else "OVER")
        rows.append([path if len(path) < 60 else path[:24] + "…" + path[-30:], f"{len(timings)}", f"{p50:.1f}",
                     f"{p99:.1f}", f"{max(timings):.1f}", f"{ratio(p50, floor):.1f}x", target])
    print_table(f"API latency from a second process on loopback ({args.agents} agents, {args.in_flight} upgrades "
                f"in flight, {args.history} finished rollouts, {written.count} events; ms)",
                ["endpoint", "n", "p50", "p99", "max", "p50 / healthz p50", f"p99 < {TARGET_P99_MS:.0f} ms"], rows)


if __name__ == "__main__":
    main()
