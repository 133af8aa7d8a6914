"""Gauges of the fleet read from the projections at scrape time (right after a restart too).

A scrape runs a handful of aggregate queries (GROUP BY) on the read-model tables and asks the
projection runner for its lag; it never loads one row per agent. No label names an agent or a rollout.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import sqlalchemy as sa
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.engine import Engine

from dma_upgrade.adapters.sql.projection_runner import ProjectionRunner
from dma_upgrade.adapters.sql.read_models import sql_table
from dma_upgrade.engine.errors import DmaUpgradeError
from dma_upgrade.engine.rollout import RolloutState
from dma_upgrade.engine.upgrade_machine import RESUMABLE_STATES, UpgradeState
from dma_upgrade.projections import inventory, progress, timers


def _database_up() -> GaugeMetricFamily:
    return GaugeMetricFamily("dma_upgrade_database_up",
                             "1 when this process could read the database at scrape time, else 0.")


def _exporter() -> GaugeMetricFamily:
    return GaugeMetricFamily("dma_upgrade_fleet_exporter",
                             "1 when this process exports the fleet gauges (one engine process at a time does).")


def _families() -> dict[str, GaugeMetricFamily]:
    """Every family this collector exposes, empty."""
    specs: tuple[tuple[str, str, list[str]], ...] = (
        ("dma_upgrade_rollouts", "Rollouts in each state.", ["state"]),
        ("dma_upgrade_agent_upgrades", "Agent upgrades in each state.", ["state"]),
        ("dma_upgrade_agent_upgrade_in_state_since_timestamp_seconds",
         "When the upgrade that has been longest in each active state entered it (Unix time).", ["state"]),
        ("dma_upgrade_agents", "Agents of the inventory on each DataMiner version.", ["version"]),
        ("dma_upgrade_agents_left_stopped", "Agents an upgrade left stopped (Auto Start off), not yet started.",
         []),
        ("dma_upgrade_clusters_on_mixed_versions", "Clusters whose agents run more than one version.", []),
        ("dma_upgrade_pending_timers", "Armed timers (scheduled starts, delayed starts, retry backoffs) by kind.",
         ["kind"]),
        ("dma_upgrade_pending_timers_next_due_timestamp_seconds",
         "When the next pending timer of each kind is due (Unix time).", ["kind"]),
        ("dma_upgrade_event_store_head_position", "Global position of the last stored event.", []),
        ("dma_upgrade_projection_lag_events", "Events a projection has yet to apply.", ["projection"]),
        ("dma_upgrade_projection_lag_seconds", "Age of the oldest event a projection has yet to apply.",
         ["projection"]),
        ("dma_upgrade_projection_stopped", "1 when a projection is stopped by a failing handler.", ["projection"]),
    )
    return {name: GaugeMetricFamily(name, doc, labels=labels) for name, doc, labels in specs}


class FleetCollector(Collector):
    """Rollouts, upgrades, inventory versions, timers and projection lag, read when Prometheus scrapes."""

    def __init__(self, engine: Engine, projections: ProjectionRunner) -> None:
        self._engine = engine
        self._projections = projections
        self.exporting: Callable[[], bool] = lambda: True
        """Whether this process exports the fleet gauges now (with several engines, one at a time does)."""

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield _database_up()
        yield _exporter()
        yield from _families().values()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """The fleet gauges; while the database is unreachable only ``dma_upgrade_database_up 0``, so the
        scrape still succeeds and this process's own counters are not lost with it. A process that does
        not export the fleet now only checks the database is up."""
        families = _families()
        exporting = self.exporting()
        try:
            with self._engine.connect() as conn:
                if exporting:
                    self._rollouts(conn, families)
                    self._upgrades(conn, families)
                    self._inventory(conn, families)
                    self._timers(conn, families)
                else:
                    conn.execute(sa.select(1))
            if exporting:
                self._lag(families)
            up = True
        except (sa.exc.SQLAlchemyError, DmaUpgradeError):
            up = False
        database_up, exporter = _database_up(), _exporter()
        database_up.add_metric([], int(up))
        exporter.add_metric([], int(exporting and up))
        yield database_up
        yield exporter
        if exporting and up:
            yield from families.values()

    @staticmethod
    def _rollouts(conn: sa.Connection, families: dict[str, GaugeMetricFamily]) -> None:
        table = sql_table(progress.ROLLOUTS)
        counts = dict.fromkeys((s.value for s in RolloutState), 0)
        for state, count in conn.execute(sa.select(table.c.state, sa.func.count()).group_by(table.c.state)):
            counts[state] = count
        for state, count in counts.items():
            families["dma_upgrade_rollouts"].add_metric([state], count)

    @staticmethod
    def _upgrades(conn: sa.Connection, families: dict[str, GaugeMetricFamily]) -> None:
        table = sql_table(progress.AGENTS)
        counts = dict.fromkeys((s.value for s in UpgradeState), 0)
        active = {s.value for s in RESUMABLE_STATES}
        query = sa.select(table.c.state, sa.func.count(), sa.func.min(table.c.state_since)).group_by(table.c.state)
        for state, count, oldest in conn.execute(query):
            counts[state] = count
            if state in active and oldest is not None:
                families["dma_upgrade_agent_upgrade_in_state_since_timestamp_seconds"].add_metric(
                    [state], _unix(oldest))
        for state, count in counts.items():
            families["dma_upgrade_agent_upgrades"].add_metric([state], count)

    @staticmethod
    def _inventory(conn: sa.Connection, families: dict[str, GaugeMetricFamily]) -> None:
        agents = sql_table(inventory.AGENTS)
        left_stopped = 0
        query = (sa.select(agents.c.version, sa.func.count(), sa.func.count(agents.c.stopped_by_upgrade))
                 .group_by(agents.c.version))
        for version, count, stopped in conn.execute(query):
            families["dma_upgrade_agents"].add_metric([version], count)
            left_stopped += stopped
        families["dma_upgrade_agents_left_stopped"].add_metric([], left_stopped)
        versions = sql_table(inventory.CLUSTER_VERSIONS)
        mixed = (sa.select(versions.c.cluster).group_by(versions.c.cluster)
                 .having(sa.func.count() > 1).subquery())
        families["dma_upgrade_clusters_on_mixed_versions"].add_metric(
            [], conn.execute(sa.select(sa.func.count()).select_from(mixed)).scalar_one())

    @staticmethod
    def _timers(conn: sa.Connection, families: dict[str, GaugeMetricFamily]) -> None:
        table = sql_table(timers.TIMERS)
        counts = dict.fromkeys(timers.TIMER_KINDS, 0)
        query = sa.select(table.c.kind, sa.func.count(), sa.func.min(table.c.due_at)).group_by(table.c.kind)
        for kind, count, due in conn.execute(query):
            counts[kind] = count
            families["dma_upgrade_pending_timers_next_due_timestamp_seconds"].add_metric([kind], _unix(due))
        for kind, count in counts.items():
            families["dma_upgrade_pending_timers"].add_metric([kind], count)

    def _lag(self, families: dict[str, GaugeMetricFamily]) -> None:
        statuses = self._projections.status()
        for status in statuses:
            families["dma_upgrade_projection_lag_events"].add_metric([status.name], status.lag_events)
            families["dma_upgrade_projection_lag_seconds"].add_metric([status.name], status.lag_seconds)
            families["dma_upgrade_projection_stopped"].add_metric([status.name], int(status.error is not None))
        if statuses:
            families["dma_upgrade_event_store_head_position"].add_metric([], statuses[0].head)


def _unix(moment: datetime) -> float:
    """Unix seconds of a timestamp column (SQLite gives naive values: UTC, as the read models store them)."""
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
