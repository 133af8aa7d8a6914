"""Prometheus metrics of one dma-upgrade process (served at ``/metrics``).

``instrument(container)`` gives a registry holding three sources: counters and histograms fed by
what this process appends through ``Metrics.store``, gauges of the fleet read from the projections at
scrape time, and the hash-chain watch that ``serve`` advances every few seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from adapters.bootstrap import Container
from adapters.metrics.chain import ChainWatch
from adapters.metrics.fleet import FleetCollector
from adapters.metrics.instrumented_store import InstrumentedEventStore


@dataclass(frozen=True)
class Metrics:
    """The registry to expose, the store to build the engine on, and the chain watch to advance."""

    registry: CollectorRegistry
    store: InstrumentedEventStore
    chain: ChainWatch


def instrument(container: Container) -> Metrics:
    """Metrics for this process: wrap the container's store and register the fleet gauges and chain watch."""
    registry = CollectorRegistry()
    store = InstrumentedEventStore(container.store, container.clock, registry)
    registry.register(FleetCollector(container.engine, container.projections))
    return Metrics(registry=registry, store=store, chain=ChainWatch(container.store, registry))
