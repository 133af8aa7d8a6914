"""Scale-out benchmark: one rollout of many simulated agents driven by 1, 2 and 3 ``dma-upgrade serve``
processes sharing one PostgreSQL database (leases, handed-out upgrades).

For each process count, on a fresh database: N agents registered in one cluster and a package
uploaded (setup, not timed); the engine processes started (``serve --no-api``, simulated gateway with
zero step latency) and idle; then the rollout of the whole cluster is started and timed until its
``RolloutCompleted`` is stored. Printed per run: agent upgrades per second, events appended per second,
the ratio to one process, and where the CPU went (seconds used by the engine processes, each one's share of a
core, and by the PostgreSQL server, out of the cores times the wall time), which shows what the ceiling is.

    python bench/scale.py --postgres-url postgresql+psycopg://postgres@127.0.0.1:5432/postgres
                          [--agents 10000] [--processes 1,2,3] [--capacity 32] [--max-concurrent 100%]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the project root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


import sqlalchemy as sa

from bench._common import print_table, progress, ratio
from bench.rollout import CLUSTER, TARGET_VERSION, PostgresBackend, fleet, register_agents
from dma_upgrade.adapters.bootstrap import bootstrap
from dma_upgrade.adapters.packages.archive import build_package, inspect_package
from dma_upgrade.adapters.settings import Settings
from dma_upgrade.adapters.sql.database import migrate, normalise_url
from dma_upgrade.engine.packages import PackageKind, PackageManifest
from dma_upgrade.engine.rollout import RolloutState
from dma_upgrade.engine.rollout_events import RolloutCancelled, RolloutCompleted, RolloutFailed, rollout_stream_id
from dma_upgrade.engine.service import AgentSelection, OptionOverrides, RolloutSpec, UpgradeService
from dma_upgrade.engine.versions import parse_version

ROOT = Path(__file__).resolve().parents[1]
TARGET_SPEED_UPS = {2: 1.4, 3: 1.8}
"""Issue 17's targets: upgrades/s of N processes against one."""
TICKS = os.sysconf("SC_CLK_TCK")
ENDINGS = (RolloutCompleted, RolloutFailed, RolloutCancelled)


def cpu_seconds(pids: list[int]) -> float:
    """User plus system CPU seconds used so far by ``pids`` (those gone count nothing)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / TICKS


def postgres_pids() -> list[int]:
    """Every process of this machine named ``postgres`` (the server and its backends)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "postgres":
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


class SessionSampler:
    """Samples what the database sessions of the engines are doing (``pg_stat_activity``) every 0.1 s: the
    database side of a profile. Idle sessions are left out; a session in a transaction waiting for its
    client (``Client:ClientRead``) is waiting for the engine."""

    def __init__(self, url: str) -> None:
        self._engine = sa.create_engine(sa.make_url(url), pool_size=1)
        self._stop = threading.Event()
        self.samples: Counter[str] = Counter()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self._engine.dispose()

    def _sample(self) -> None:
        query = sa.text("SELECT state, wait_event_type, wait_event FROM pg_stat_activity "
                        "WHERE datname = current_database() AND pid <> pg_backend_pid() AND state <> 'idle'")
        with self._engine.connect() as conn:
            while not self._stop.wait(0.1):
                for state, kind, event in conn.execute(query):
                    self.samples[f"{kind}:{event}" if kind else f"on CPU ({state})"] += 1
                conn.rollback()

    def shares(self, top: int = 4) -> str:
        """The most frequent session states, as shares of all samples."""
        total = sum(self.samples.values()) or 1
        return ", ".join(f"{name} {count / total:.0%}" for name, count in self.samples.most_common(top))


@dataclass(frozen=True)
class Run:
    processes: int
    agents: int
    seconds: float
    events: int
    engine_cpus: tuple[float, ...]
    """CPU seconds of each engine process."""
    postgres_cpu: float
    sessions: str

    @property
    def engine_cpu(self) -> float:
        return sum(self.engine_cpus)

    @property
    def upgrades_per_second(self) -> float:
        return self.agents / self.seconds

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds


def prepare(url: str, agents: int) -> tuple[UpgradeService, str]:
    """Register the agents and upload the package; returns the service and the package's SHA-256."""
    app = bootstrap(Settings(database_url=url), check_schema=False)
    migrate(app.engine)
    service = app.service
    register_agents(service, fleet(agents))
    manifest = PackageManifest.for_version(parse_version(TARGET_VERSION), PackageKind.FULL)
    with tempfile.TemporaryDirectory(prefix="dma_upgrade_bench_pkg_") as directory:
        inspected = inspect_package(build_package(manifest, Path(directory)))
    service.record_upload(sha256=inspected.sha256, file_name=f"{TARGET_VERSION}.dmupgrade", size=inspected.size,
                          manifest=inspected.manifest, actor="bench", checked_agents=service.agents())
    return service, inspected.sha256


def start_engines(url: str, count: int, capacity: int, data_dir: Path) -> list[subprocess.Popen[bytes]]:
    env = {**os.environ, "DMA_UPGRADE_DATABASE_URL": url, "DMA_UPGRADE_DATA_DIR": str(data_dir),
           "DMA_UPGRADE_AGENT_GATEWAY": "simulated", "DMA_UPGRADE_SIMULATED_STEP_SECONDS": "0",
           "DMA_UPGRADE_ENGINE_CAPACITY": str(capacity)}
    engines = []
    for index in range(count):
        log = open(data_dir / f"engine-{index}.log", "w")  # noqa: SIM115 (closed with the process)
        engines.append(subprocess.Popen([sys.executable, "-m", "dma_upgrade", "serve", "--no-api",
                                         "--poll-seconds", "0.2"], cwd=ROOT, env=env, stdout=log,
                                        stderr=subprocess.STDOUT))
    for index, engine in enumerate(engines):
        path = data_dir / f"engine-{index}.log"
        while "engine instance" not in path.read_text():
            if engine.poll() is not None:
                raise RuntimeError(f"engine {index} exited: {path.read_text()}")
            time.sleep(0.1)
    return engines


def stop_engines(engines: list[subprocess.Popen[bytes]]) -> None:
    for engine in engines:
        engine.terminate()
    for engine in engines:
        try:
            engine.wait(30)
        except subprocess.TimeoutExpired:
            engine.kill()
            engine.wait(10)


def run(backend: PostgresBackend, processes: int, agents: int, capacity: int, max_concurrent: str) -> Run:
    with backend.fresh_database(f"scale_{processes}") as url, \
            tempfile.TemporaryDirectory(prefix="dma_upgrade_bench_scale_") as directory:
        progress(f"{processes} process(es): registering {agents} agents")
        service, package = prepare(url, agents)
        engines = start_engines(url, processes, capacity, Path(directory))
        try:
            spec = RolloutSpec(package=package, selection=AgentSelection(cluster=CLUSTER),
                               overrides=OptionOverrides(delayed_start=False), max_concurrent=max_concurrent)
            before = service.store.head_position()
            engine_pids = [engine.pid for engine in engines]
            server_pids = postgres_pids()
            engine_cpus, postgres_cpu = [cpu_seconds([pid]) for pid in engine_pids], cpu_seconds(server_pids)
            progress(f"{processes} process(es): rollout of {agents} agents started")
            sampler = SessionSampler(url)
            sampler.start()
            start = time.perf_counter()
            planned = service.start_rollout(spec, actor="bench")
            stream = rollout_stream_id(planned.rollout_id)
            while not any(isinstance(r.event, ENDINGS) for r in service.store.read_stream(stream, after_version=1)):
                for index, engine in enumerate(engines):  # the plan (version 1) is not read again: it is large
                    if engine.poll() is not None:
                        log = (Path(directory) / f"engine-{index}.log").read_text()
                        raise RuntimeError(f"engine {index} exited: {log}")
                time.sleep(0.2)
            seconds = time.perf_counter() - start
            sampler.stop()
            state = service.rollout(planned.rollout_id).state
            if state is not RolloutState.COMPLETED:
                raise RuntimeError(f"the rollout ended {state}")
            events = service.store.head_position() - before
            used = tuple(cpu_seconds([pid]) - before_cpu
                         for pid, before_cpu in zip(engine_pids, engine_cpus, strict=True))
            result = Run(processes, agents, seconds, events, used,
                         cpu_seconds(postgres_pids()) - postgres_cpu, sampler.shares())
        finally:
            stop_engines(engines)
        progress(f"{processes} process(es): {result.upgrades_per_second:,.1f} upgrades/s")
        return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--postgres-url", required=True, help="a PostgreSQL server (a database of its own is created)")
    parser.add_argument("--agents", type=int, default=10_000, help="agents in the rollout (default 10000)")
    parser.add_argument("--processes", default="1,2,3", help="engine process counts to run (default 1,2,3)")
    parser.add_argument("--capacity", type=int, default=32,
                        help="upgrades each engine process drives at once (DMA_UPGRADE_ENGINE_CAPACITY, default 32)")
    parser.add_argument("--max-concurrent", default="100%", help="the rollout's max concurrent (default 100%%)")
    args = parser.parse_args(argv)
    backend = PostgresBackend(normalise_url(args.postgres_url))
    runs = [run(backend, int(n), args.agents, args.capacity, args.max_concurrent) for n in args.processes.split(",")]
    base = runs[0]
    cores = os.cpu_count() or 1
    rows = []
    for r in runs:
        speed_up = ratio(r.upgrades_per_second, base.upgrades_per_second)
        busy = ratio(r.engine_cpu + r.postgres_cpu, cores * r.seconds)
        wanted = TARGET_SPEED_UPS.get(r.processes)
        target = "" if wanted is None else f">= {wanted}x {'ok' if speed_up >= wanted else 'MISSED'}"
        rows.append([str(r.processes), str(r.agents), f"{r.seconds:.1f}", f"{r.upgrades_per_second:,.1f}",
                     f"{r.events_per_second:,.0f}", f"{speed_up:.2f}x", f"{r.engine_cpu:.1f}",
                     " / ".join(f"{cpu / r.seconds:.2f}" for cpu in r.engine_cpus), f"{r.postgres_cpu:.1f}",
                     f"{busy:.0%}", target])
    print_table(f"One rollout of {args.agents} simulated agents (zero step latency) on PostgreSQL, by number of "
                f"`dma-upgrade serve` processes (capacity {args.capacity} each, max concurrent {args.max_concurrent}; "
                f"{cores} cores)",
                ["processes", "agents", "seconds", "upgrades/s", "events/s", "vs 1 process", "engine CPU s",
                 "cores per engine", "PostgreSQL CPU s", "cores busy", "target"], rows)
    one_busy = (base.engine_cpu + base.postgres_cpu) / base.seconds
    print(f"\nCeiling on this machine: {base.processes} process(es) kept {one_busy:.2f} of {cores} cores busy (engine "
          f"and server); however many processes share the {cores} cores, they can reach at most "
          f"{cores / one_busy:.2f}x that rate, and less where they wait on each other.")
    print("\nDatabase sessions of the engines, sampled every 0.1 s (pg_stat_activity, idle ones left out):")
    for r in runs:
        print(f"  {r.processes} process(es): {r.sessions}")
    print("\nupgrades/s: agents / seconds from the rollout's start to its RolloutCompleted; events/s: events appended"
          "\nin that time. CPU: user+system seconds of the engine processes and of every postgres process, and"
          "\ntheir sum over cores x seconds (near 100%: the cores are the ceiling).")


if __name__ == "__main__":
    main()
