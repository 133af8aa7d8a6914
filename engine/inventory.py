"""The agent inventory as a fold of agent events: who the agents are and what they run."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from engine.agent_events import (
    AgentFactsReported,
    AgentLeftStopped,
    AgentRegistered,
    AgentStartedManually,
    AgentVersionChanged,
    FailoverRole,
)
from engine.events import Event
from engine.packages import AgentFacts


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


def clusters_on_mixed_versions(agents: Iterable[AgentRecord]) -> dict[str, list[str]]:
    """Clusters whose agents run different versions, with those versions sorted."""
    versions: dict[str, set[str]] = {}
    for agent in agents:
        if agent.cluster is not None:
            versions.setdefault(agent.cluster, set()).add(agent.version)
    return {cluster: sorted(found) for cluster, found in sorted(versions.items()) if len(found) > 1}


def cluster_label(cluster: str | None) -> str:
    """``cluster NAME``, or ``no cluster``: how a message names where an agent is."""
    return f"cluster {cluster}" if cluster is not None else "no cluster"
