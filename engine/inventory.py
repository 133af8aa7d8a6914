"""The agent inventory as a fold of agent events: who the agents are and what they run."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from dma_upgrade.engine.agent_events import (
    AgentFactsReported,
    AgentLeftStopped,
    AgentPortsChanged,
    AgentRegistered,
    AgentStartedManually,
    AgentVersionChanged,
    AgentWebUpgraded,
    FailoverRole,
)
from dma_upgrade.engine.errors import Conflict, InvalidInput
from dma_upgrade.engine.events import Event, RecordedEvent, events_by_stream
from dma_upgrade.engine.packages import AgentFacts
from dma_upgrade.engine.versions import version_identity, version_sort_key


@dataclass
class AgentRecord:
    """One agent as the events describe it now."""

    name: str
    address: str
    cluster: str | None
    version: str
    dataminer_id: int | None = None
    failover_partner: str | None = None
    failover_role: FailoverRole | None = None
    facts: AgentFacts | None = None
    stopped_by_upgrade: str | None = None
    started_by_hand_after: str | None = None
    """The upgrade after which an operator last started the agent by hand."""
    stream_version: int = 0
    version_history: list[str] = field(default_factory=list)
    last_web_upgrade: str | None = None
    """The upgrade that last upgraded the agent's web components (a Web package)."""


def registered_agents(recorded: Iterable[RecordedEvent]) -> list[AgentRecord]:
    """Every registered agent, by name, from the events of the agent streams (``agent-*``) in global order."""
    records = [fold_agent(events) for events in events_by_stream(recorded).values()]
    return sorted((r for r in records if r is not None), key=lambda r: r.name)


def fold_agent(events: Iterable[Event]) -> AgentRecord | None:
    """Rebuild one agent from its stream (None for an empty stream)."""
    record: AgentRecord | None = None
    for event in events:
        record = apply_agent_event(record, event)
    return record


def apply_agent_event(record: AgentRecord | None, event: Event) -> AgentRecord | None:
    """Apply one agent event; the first must be ``AgentRegistered``."""
    match event:
        case AgentRegistered():
            record = AgentRecord(name=event.name, address=event.address, cluster=event.cluster,
                                 version=event.version, dataminer_id=event.dataminer_id,
                                 failover_partner=event.failover_partner, failover_role=event.failover_role,
                                 version_history=[event.version])
        case AgentFactsReported(facts=facts) if record is not None:
            record.facts = facts
        case AgentVersionChanged(version=version) if record is not None:
            record.version = version
            record.version_history.append(version)
            if record.facts is not None:
                record.facts = record.facts.model_copy(update={"version": version})
        case AgentPortsChanged() if record is not None and record.facts is not None:
            record.facts = record.facts.model_copy(update={"snmp_agent_port": event.snmp_agent_port,
                                                           "windows_snmp_port": event.windows_snmp_port})
        case AgentWebUpgraded() if record is not None:
            record.version_history.append(web_upgrade_line(event.web_version))
            record.last_web_upgrade = event.upgrade_id
        case AgentLeftStopped(upgrade_id=upgrade_id) if record is not None:
            record.stopped_by_upgrade = upgrade_id
        case AgentStartedManually(upgrade_id=upgrade_id) if record is not None:
            record.stopped_by_upgrade = None
            record.started_by_hand_after = upgrade_id
        case _:
            pass
    if record is not None:
        record.stream_version += 1
    return record


def web_upgrade_line(web_version: str) -> str:
    """How a version history lists a web upgrade: ``10.4.9.0-14794 (web upgrade)``."""
    return f"{web_version} (web upgrade)"


def clusters_on_mixed_versions(agents: Iterable[AgentRecord]) -> dict[str, list[str]]:
    """Clusters whose agents run different versions, with those versions sorted numerically.

    Versions are compared parsed, so notations of one version (``10.4.0.0-14112``, ``10.4.0.0(CU0)-14112``)
    are one version, shown as the first agent's text."""
    versions: dict[str, dict[str, str]] = {}
    for agent in agents:
        if agent.cluster is not None:
            versions.setdefault(agent.cluster, {}).setdefault(version_identity(agent.version), agent.version)
    return {cluster: sorted(found.values(), key=version_sort_key)
            for cluster, found in sorted(versions.items()) if len(found) > 1}


def ports_change(record: AgentRecord, snmp_agent_port: int | None,
                 windows_snmp_port: int | None) -> list[AgentPortsChanged]:
    """The event setting an agent's SNMP ports (None: keep that one), or none when they are so already.

    The ports are facts the agent reports, so an agent that reported none is refused (``Conflict``)."""
    if snmp_agent_port is None and windows_snmp_port is None:
        raise InvalidInput("give --snmp-port, --windows-snmp-port or both")
    for port in (snmp_agent_port, windows_snmp_port):
        if port is not None and not 1 <= port <= 65535:
            raise InvalidInput(f"invalid UDP port {port}: expected 1 to 65535")
    if record.facts is None:
        raise Conflict(f"agent {record.name} has reported no facts: report them (with its ports) first")
    wanted = AgentPortsChanged(snmp_agent_port=snmp_agent_port or record.facts.snmp_agent_port,
                               windows_snmp_port=windows_snmp_port or record.facts.windows_snmp_port)
    if (wanted.snmp_agent_port, wanted.windows_snmp_port) == (record.facts.snmp_agent_port,
                                                              record.facts.windows_snmp_port):
        return []
    return [wanted]


def cluster_label(cluster: str | None) -> str:
    """``cluster NAME``, or ``no cluster``: how a message names where an agent is."""
    return f"cluster {cluster}" if cluster is not None else "no cluster"
