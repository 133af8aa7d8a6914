"""The composition root: every object of a process is built here, once; tests and tools override any by keyword.

``bootstrap(settings, **overrides)`` opens the database and wires, in this order, with no object set on
another after construction: the event store (counted by the metrics when asked), the projections, the agent
gateway, the application service on the store and the gateway, and the package files. The runtime's
pieces (leases, rollout runners, the engine process) are made by the returned ``App`` on those objects.

The agent gateway is what the settings choose (``DMA_UPGRADE_AGENT_GATEWAY``): the HTTP gateway, or a
simulation of the registered inventory, which finds agents through a read of the agent streams (not through
the service, which needs the gateway: no cycle). The demo asks for a fixed simulated fleet (``simulation``);
a test passes its own gateway (``gateway``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy.engine import Engine

from dma_upgrade.adapters.agents.http_gateway import HttpAgentGateway
from dma_upgrade.adapters.agents.simulated_gateway import SimulatedAgent, SimulatedAgentGateway
from dma_upgrade.adapters.agents.simulated_inventory import simulated_inventory
from dma_upgrade.adapters.clock import SystemClock, UuidFactory
from dma_upgrade.adapters.packages.store import FilePackageStore
from dma_upgrade.adapters.runtime.engine_process import EngineProcess, RolloutIndex
from dma_upgrade.adapters.runtime.ports import Waiter
from dma_upgrade.adapters.runtime.rollout_runner import RolloutRunner
from dma_upgrade.adapters.runtime.waiter import RealWaiter
from dma_upgrade.adapters.settings import Settings
from dma_upgrade.adapters.sql.database import create_db_engine, ensure_schema, is_sqlite
from dma_upgrade.adapters.sql.event_store import SqlEventStore
from dma_upgrade.adapters.sql.leases import SqlLeases
from dma_upgrade.adapters.sql.projection_runner import ProjectionRunner
from dma_upgrade.engine.addresses import AddressPolicy
from dma_upgrade.engine.agent_events import AGENT_STREAMS
from dma_upgrade.engine.catalog import default_codec
from dma_upgrade.engine.codec import EventCodec
from dma_upgrade.engine.inventory import AgentRecord, registered_agents
from dma_upgrade.engine.ports import AgentGateway, Clock, IdFactory
from dma_upgrade.engine.rollout_events import ROLLOUT_STREAMS
from dma_upgrade.engine.service import UpgradeService
from dma_upgrade.engine.upgrade_events import Step
from dma_upgrade.projections.catalog import all_projections

if TYPE_CHECKING:
    from dma_upgrade.adapters.metrics import Metrics


@dataclass(frozen=True)
class Simulation:
    """A fixed fleet of simulated agents (the demo's), each step taking its time on the wall clock."""

    agents: Sequence[SimulatedAgent]
    step_seconds: Mapping[Step, float]


@dataclass
class App:
    """Everything one process uses, wired once by ``bootstrap``."""

    settings: Settings
    engine: Engine
    codec: EventCodec
    clock: Clock
    ids: IdFactory
    store: SqlEventStore
    """The event store (reads, audit); the service appends through ``metrics.store`` when metrics are on."""
    projections: ProjectionRunner
    address_policy: AddressPolicy
    """Which IP addresses agents may have (``DMA_UPGRADE_AGENT_NETWORKS``), for the service and the gateway."""
    gateway: AgentGateway
    service: UpgradeService
    packages: FilePackageStore
    waiter: Waiter
    stopping: threading.Event
    """Set when the process shuts down: waits, agent-call backoffs and every drive end at once."""
    metrics: Metrics | None = None
    _closers: list[Callable[[], None]] = field(default_factory=list, repr=False)

    def leases(self) -> SqlLeases:
        """This process's leases on the database, as one engine process among any number."""
        return SqlLeases(self.engine, self.clock, seconds=self.settings.lease_seconds)

    def runner(self, *, actor: str = "engine", poll_seconds: float = 0.2, waiter: Waiter | None = None,
               stopping: threading.Event | None = None) -> RolloutRunner:
        """A runner driving rollouts through this process's gateway; ``waiter`` and ``stopping`` default to the
        process's (a test's waiter may act while the runner waits; ``run`` in the foreground stops on its own)."""
        return RolloutRunner(self.service, self.gateway, waiter or self.waiter, actor=actor,
                             poll_seconds=poll_seconds, stopping=stopping or self.stopping,
                             phase_seconds=self.settings.install_phase_seconds)

    def engine_process(self, *, poll_seconds: float = 1.0, index: RolloutIndex | None = None,
                       leases: SqlLeases | None = None, capacity: int | None = None,
                       scheduler: BackgroundScheduler | None = None) -> EngineProcess:
        """The engine process of ``serve``, one per app (it stops with the app's ``stopping``): with ``leases`` one
        of several, driving up to ``capacity`` upgrades at once (default ``DMA_UPGRADE_ENGINE_CAPACITY``)."""
        return EngineProcess(self.service, self.gateway, self.waiter, poll_seconds=poll_seconds, scheduler=scheduler,
                             index=index, leases=leases,
                             capacity=self.settings.engine_capacity if capacity is None else capacity,
                             stopping=self.stopping, phase_seconds=self.settings.install_phase_seconds)

    def close(self) -> None:
        """Close what ``bootstrap`` opened (the database and its own gateway; an overriding one is the caller's)."""
        for close in self._closers:
            close()
        self.engine.dispose()


def bootstrap(settings: Settings | None = None, *, clock: Clock | None = None, ids: IdFactory | None = None,
              codec: EventCodec | None = None, check_schema: bool = True, pool_size: int | None = None,
              gateway: AgentGateway | None = None, simulation: Simulation | None = None,
              waiter: Waiter | None = None, stopping: threading.Event | None = None,
              metrics: bool = False) -> App:
    """Open the configured database (migrating the embedded default) and wire every object of the process.

    ``gateway`` replaces the agent gateway the settings choose, ``simulation`` makes it a fixed simulated fleet;
    ``waiter`` replaces waiting on the wall clock; ``stopping`` is the process's shutdown event; ``metrics``
    counts what the service appends (``App.metrics``)."""
    settings = settings or Settings()
    address_policy = AddressPolicy.from_setting(settings.agent_networks)  # a malformed setting opens nothing
    engine = create_db_engine(settings.resolved_database_url,
                              pool_size=settings.database_pool_size if pool_size is None else pool_size)
    if check_schema:
        try:
            ensure_schema(engine, auto_migrate=is_sqlite(engine))  # embedded SQLite migrates itself
        except Exception:
            engine.dispose()
            raise
    codec = codec or default_codec()
    clock = clock or SystemClock()
    ids = ids or UuidFactory()
    stopping = stopping or threading.Event()
    store = SqlEventStore(engine, codec, clock, notify_prefixes=(ROLLOUT_STREAMS,))
    projections = ProjectionRunner(engine, store, clock, all_projections())
    counted = None
    if metrics:
        from dma_upgrade.adapters.metrics import instrument  # prometheus is loaded only where metrics are served

        counted = instrument(store, engine, projections, clock)
    closers: list[Callable[[], None]] = []
    if gateway is None:
        gateway = _settings_gateway(settings, simulation, stopping, lambda: registered_agents(
            store.read_category(AGENT_STREAMS)), closers, address_policy)
    service = UpgradeService(store if counted is None else counted.store, clock, ids, gateway, address_policy)
    return App(settings=settings, engine=engine, codec=codec, clock=clock, ids=ids, store=store,
               projections=projections, address_policy=address_policy, gateway=gateway, service=service,
               packages=FilePackageStore(settings.data_dir / "packages"), waiter=waiter or RealWaiter(stopping),
               stopping=stopping, metrics=counted, _closers=closers)


def _settings_gateway(settings: Settings, simulation: Simulation | None, stopping: threading.Event,
                      inventory: Callable[[], list[AgentRecord]], closers: list[Callable[[], None]],
                      policy: AddressPolicy) -> AgentGateway:
    """The demo's fleet, else the gateway ``DMA_UPGRADE_AGENT_GATEWAY`` chooses: HTTP (its backoffs cut short by
    ``stopping``; closed with the app), or the simulated ``inventory`` (``DMA_UPGRADE_SIMULATED_STEP_SECONDS``)."""
    if simulation is not None:
        return SimulatedAgentGateway(simulation.agents, sleeper=time.sleep, step_seconds=simulation.step_seconds)
    if settings.agent_gateway == "http":
        http = HttpAgentGateway.from_settings(settings, stopping=stopping, policy=policy)
        closers.append(http.close)
        return http
    return simulated_inventory(inventory, settings.simulated_step_seconds)
