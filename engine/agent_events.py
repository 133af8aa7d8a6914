"""Events of the agent inventory (stream ``agent-<name>``)."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import Field, field_validator

from dma_upgrade.engine.addresses import canonical_address
from dma_upgrade.engine.events import Event
from dma_upgrade.engine.packages import AgentFacts


class FailoverRole(StrEnum):
    """The role of an agent in a failover pair."""

    MAIN = "main"
    BACKUP = "backup"


class AgentRegistered(Event):
    """An agent joined the inventory.

    Schema history: version 1 named the address ``ip`` and knew nothing of failover; version 2
    calls it ``address`` (a host name is allowed) and adds the DataMiner ID and failover pairing.
    Addresses were any printable text until they became ``host[:port]`` (``engine.addresses``): an event
    reads its address in canonical form when it parses, and as stored otherwise (the HTTP gateway never
    contacts such an address).
    """

    event_type = "AgentRegistered"
    schema_version = 2

    name: str
    address: str
    cluster: str | None = None
    version: str
    dataminer_id: int | None = None
    failover_partner: str | None = None
    failover_role: FailoverRole | None = None

    @field_validator("address")
    @classmethod
    def _canonical(cls, address: str) -> str:
        return canonical_address(address)


def upcast_agent_registered_v1(payload: dict[str, Any]) -> dict[str, Any]:
    """AgentRegistered v1 -> v2: ``ip`` becomes ``address``; no failover pairing was known."""
    upcast = {key: value for key, value in payload.items() if key != "ip"}
    upcast["address"] = payload["ip"]
    upcast.setdefault("dataminer_id", None)
    upcast.setdefault("failover_partner", None)
    upcast.setdefault("failover_role", None)
    return upcast


class AgentFactsReported(Event):
    """The agent reported the facts its prerequisite checks are judged on."""

    event_type = "AgentFactsReported"

    facts: AgentFacts


class AgentVersionChanged(Event):
    """The agent runs another DataMiner version after an upgrade (its ``VersionHistory.txt`` line)."""

    event_type = "AgentVersionChanged"

    version: str
    previous_version: str
    upgrade_id: str | None = None


class AgentLeftStopped(Event):
    """An upgrade ended with Auto Start off: the agent's DataMiner stays stopped until started by hand."""

    event_type = "AgentLeftStopped"

    upgrade_id: str


class AgentStartedManually(Event):
    """An operator started the DataMiner service of an agent left stopped (Auto Start off)."""

    event_type = "AgentStartedManually"

    upgrade_id: str | None = None


class AgentPortsChanged(Event):
    """An operator set the UDP ports the agent's SNMP services use (facts it reports otherwise).

    Both ports are recorded as they are after the change; later reported facts replace them."""

    event_type = "AgentPortsChanged"

    snmp_agent_port: int = Field(ge=1, le=65535)
    """SLSNMPAgent, DataMiner's own SNMP agent."""
    windows_snmp_port: int = Field(ge=1, le=65535)
    """The Windows SNMP service."""


AGENT_STREAMS = "agent-"
"""The prefix of every agent's stream: ``agent_stream_id`` and ``agent_of_stream`` go between a name and its stream."""


def agent_stream_id(name: str) -> str:
    """The event stream of one agent of the inventory."""
    return f"{AGENT_STREAMS}{name}"


def agent_of_stream(stream_id: str) -> str:
    """The agent name of an agent's stream id."""
    return stream_id.removeprefix(AGENT_STREAMS)


class AgentWebUpgraded(Event):
    """A Web package upgraded the agent's web components to ``web_version``; its DataMiner version is unchanged
    (its ``VersionHistory.txt`` line says "web upgrade")."""

    event_type = "AgentWebUpgraded"

    web_version: str
    upgrade_id: str | None = None


AGENT_EVENTS: tuple[type[Event], ...] = (AgentRegistered, AgentFactsReported, AgentVersionChanged,
                                         AgentLeftStopped, AgentStartedManually, AgentPortsChanged,
                                         AgentWebUpgraded)
AGENT_UPCASTERS = {("AgentRegistered", 1): upcast_agent_registered_v1}
