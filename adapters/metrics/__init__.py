"""Prometheus metrics of one dma-upgrade process (served at ``/metrics``).

``instrument(container)`` gives a registry holding three sources: counters and histograms fed by
what this process appends through ``Metrics.store``, gauges of the fleet read from the projections at
scrape time, and the hash-chain watch that ``serve`` advances every few seconds. An engine process
among several (``with_engine``) adds its identity and leases, and exports the fleet gauges only while
it holds the fleet role (``adapters.metrics.engine_instance``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from dma_upgrade.adapters.bootstrap import Container
from dma_upgrade.adapters.metrics.chain import ChainWatch
from dma_upgrade.adapters.metrics.engine_instance import FLEET_ROLE, EngineInstanceCollector
from dma_upgrade.adapters.metrics.fleet import FleetCollector
from dma_upgrade.adapters.metrics.instrumented_store import InstrumentedEventStore
from dma_upgrade.adapters.runtime.leased_work import playing
from dma_upgrade.adapters.sql.leases import SqlLeases


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


def instrument(container: Container) -> Metrics:
    """Metrics for this process: wrap the container's store and register the fleet gauges and chain watch."""
    registry = CollectorRegistry()
    store = InstrumentedEventStore(container.store, container.clock, registry)
    fleet = FleetCollector(container.engine, container.projections)
    registry.register(fleet)
    return Metrics(registry=registry, store=store, chain=ChainWatch(container.store, registry), fleet=fleet)
