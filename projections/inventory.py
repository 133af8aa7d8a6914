"""The agent inventory as tables: every agent as it is now, and how many agents of each cluster run each version.

``cluster_versions`` holds one row per (cluster, version) with at least one agent, so the clusters on
mixed versions (``engine.inventory.clusters_on_mixed_versions``) are the clusters with more than one row. Its
version is the parsed version's ``identity`` (``engine.versions.version_identity``), so two notations of one
version are one row.
"""

from __future__ import annotations

from dma_upgrade.engine.agent_events import (
    AGENT_STREAMS,
    AgentFactsReported,
    AgentLeftStopped,
    AgentRegistered,
    AgentStartedManually,
    AgentVersionChanged,
    agent_of_stream,
)
from dma_upgrade.engine.events import Event
from dma_upgrade.engine.versions import version_identity
from dma_upgrade.projections.base import Recorded
from dma_upgrade.projections.tables import ColumnType as C
from dma_upgrade.projections.tables import RowAccess, TableSpec

AGENTS = TableSpec("agent_inventory", ("agent",), (
    ("agent", C.TEXT), ("address", C.TEXT), ("cluster", C.TEXT), ("version", C.TEXT), ("dataminer_id", C.INT),
    ("failover_partner", C.TEXT), ("failover_role", C.TEXT), ("os", C.TEXT), ("stopped_by_upgrade", C.TEXT),
    ("registered_at", C.TIMESTAMP), ("version_changed_at", C.TIMESTAMP),
))
CLUSTER_VERSIONS = TableSpec("cluster_versions", ("cluster", "version"), (
    ("cluster", C.TEXT), ("version", C.TEXT), ("agents", C.INT),
))


class InventoryProjection:
    """Agents with their address, cluster, version, failover pairing, OS and whether an upgrade left them stopped."""

    name = "inventory"
    tables: tuple[TableSpec, ...] = (AGENTS, CLUSTER_VERSIONS)
    event_types: frozenset[type[Event]] = frozenset({AgentRegistered, AgentFactsReported, AgentVersionChanged,
                                                     AgentLeftStopped, AgentStartedManually})

    def handle(self, recorded: Recorded, rows: RowAccess) -> None:
        event = recorded.event
        if isinstance(event, AgentRegistered):
            self._registered(event, recorded, rows)
            return
        if not recorded.stream_id.startswith(AGENT_STREAMS):
            return
        row = rows.get(AGENTS.name, (agent_of_stream(recorded.stream_id),))
        if row is None:
            return
        match event:
            case AgentFactsReported(facts=facts):
                row["os"] = facts.os
            case AgentVersionChanged(version=version):
                _count(rows, row["cluster"], row["version"], -1)
                _count(rows, row["cluster"], version, +1)
                row["version"] = version
                row["version_changed_at"] = recorded.recorded_at
            case AgentLeftStopped(upgrade_id=upgrade_id):
                row["stopped_by_upgrade"] = upgrade_id
            case AgentStartedManually():
                row["stopped_by_upgrade"] = None
            case _:
                return
        rows.put(AGENTS.name, row)

    def _registered(self, event: AgentRegistered, recorded: Recorded, rows: RowAccess) -> None:
        previous = rows.get(AGENTS.name, (event.name,))
        if previous is not None:  # names are unique; should it happen, the counts still stay exact
            _count(rows, previous["cluster"], previous["version"], -1)
        rows.put(AGENTS.name, {
            "agent": event.name, "address": event.address, "cluster": event.cluster, "version": event.version,
            "dataminer_id": event.dataminer_id, "failover_partner": event.failover_partner,
            "failover_role": event.failover_role.value if event.failover_role else None, "os": None,
            "stopped_by_upgrade": None, "registered_at": recorded.recorded_at, "version_changed_at": None,
        })
        _count(rows, event.cluster, event.version, +1)


def _count(rows: RowAccess, cluster: str | None, version: str, delta: int) -> None:
    """Add ``delta`` agents to (cluster, version); a row whose count reaches 0 is deleted."""
    if cluster is None:
        return
    identity = version_identity(version)
    row = rows.get(CLUSTER_VERSIONS.name, (cluster, identity))
    agents = (row["agents"] if row is not None else 0) + delta
    if agents <= 0:
        rows.delete(CLUSTER_VERSIONS.name, (cluster, identity))
    else:
        rows.put(CLUSTER_VERSIONS.name, {"cluster": cluster, "version": identity, "agents": agents})
