"""Metrics of one engine process among several: who it is, what it holds, and whether it exports the fleet.

Every process serves ``dma_upgrade_engine_info`` with its holder identity (``engine_instance``, also
in its log) and its own lease figures. Gauges read from the database describe the whole fleet, the
same whichever process is scraped; only the process holding the ``fleet-gauges`` role lease exports
them (``dma_upgrade_fleet_exporter`` 1), so a ``sum`` across instances counts each rollout once. A
process claims the role when it is scraped and nobody holds it; its heartbeat keeps it, and when it
dies the role passes to the next process scraped after the lease expires.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector

from dma_upgrade.adapters.sql.leases import ENGINE, ROLE, ROLLOUT, UPGRADE, SqlLeases

FLEET_ROLE = "fleet-gauges"
KINDS = (ENGINE, ROLLOUT, UPGRADE, ROLE)


class EngineInstanceCollector(Collector):
    """This engine process's identity, the leases it holds, claimed and lost, and the upgrades it drives."""

    def __init__(self, leases: SqlLeases, driving: Callable[[], int]) -> None:
        self._leases = leases
        self._driving = driving

    def describe(self) -> Iterator[InfoMetricFamily | GaugeMetricFamily | CounterMetricFamily]:
        yield from self.collect()

    def collect(self) -> Iterator[InfoMetricFamily | GaugeMetricFamily | CounterMetricFamily]:
        info = InfoMetricFamily("dma_upgrade_engine", "This engine process (one of any number on one database).")
        info.add_metric([], {"engine_instance": self._leases.owner, "host": socket.gethostname(),
                             "pid": str(os.getpid()), "lease_seconds": f"{self._leases.seconds:g}"})
        yield info
        held = GaugeMetricFamily("dma_upgrade_engine_leases_held", "Leases this process holds now, by kind.",
                                 labels=["kind"])
        claimed = CounterMetricFamily("dma_upgrade_engine_leases_claimed",
                                      "Leases this process claimed (a takeover of a lapsed one included), by kind.",
                                      labels=["kind"])
        lost = CounterMetricFamily("dma_upgrade_engine_leases_lost",
                                   "Leases this process found taken over by another at a renewal, by kind.",
                                   labels=["kind"])
        now = self._leases.held()
        for kind in KINDS:
            held.add_metric([kind], sum(lease.kind == kind for lease in now))
            claimed.add_metric([kind], self._leases.claimed[kind])
            lost.add_metric([kind], self._leases.lost[kind])
        driving = GaugeMetricFamily("dma_upgrade_engine_upgrades_driving",
                                    "Agent upgrades this process drives right now.")
        driving.add_metric([], self._driving())
        yield from (held, claimed, lost, driving)
