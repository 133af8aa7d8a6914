"""Prometheus metrics of one dma-upgrade process (served at ``/metrics``).

``instrument`` (called by ``bootstrap(..., metrics=True)``) gives a registry holding three sources: counters and
histograms fed by what this process appends through ``Metrics.store``, gauges of the fleet read from the
projections at scrape time, and the hash-chain watch that ``serve`` advances every few seconds. An engine process
among several (``with_engine``) adds its identity and leases, and exports the fleet gauges only while
it holds the fleet role (``adapters.metrics.engine_instance``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry
from sqlalchemy.engine import Engine

from dma_upgrade.adapters.metrics.chain import ChainWatch
from dma_upgrade.adapters.metrics.engine_instance import FLEET_ROLE, EngineInstanceCollector
from dma_upgrade.adapters.metrics.fleet import FleetCollector
from dma_upgrade.adapters.metrics.instrumented_store import InstrumentedEventStore
from dma_upgrade.adapters.runtime.leased_work import playing
from dma_upgrade.adapters.sql.event_store import SqlEventStore
from dma_upgrade.adapters.sql.leases import SqlLeases
from dma_upgrade.adapters.sql.projection_runner import ProjectionRunner
from dma_upgrade.engine.ports import Clock


@dataclass(frozen=True)
class Metrics:
    """The registry to expose, the store to build the engine on, and the chain watch to advance."""

    registry: CollectorRegistry
    store: InstrumentedEventStore
    chain: ChainWatch
    fleet: FleetCollector

    def with_engine(self, leases: SqlLeases, driving: Callable[[], int]) -> None:
        """This process is one engine of several: export its identity and leases, and the fleet gauges only
        while it holds the fleet role."""
        self.registry.register(EngineInstanceCollector(leases, driving))
        self.fleet.exporting = playing(leases, FLEET_ROLE)


def instrument(store: SqlEventStore, engine: Engine, projections: ProjectionRunner, clock: Clock) -> Metrics:
    """Metrics for this process: wrap ``store`` and register the fleet gauges and chain watch."""
    registry = CollectorRegistry()
    counted = InstrumentedEventStore(store, clock, registry)
    fleet = FleetCollector(engine, projections)
    registry.register(fleet)
    return Metrics(registry=registry, store=counted, chain=ChainWatch(store, registry), fleet=fleet)
