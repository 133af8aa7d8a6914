"""Events of the agent inventory (stream ``agent-<name>``)."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from engine.events import Event


class FailoverRole(StrEnum):
    """The role of an agent in a failover pair."""

    MAIN = "main"
    BACKUP = "backup"


class AgentRegistered(Event):
    """An agent joined the inventory.

    Schema history: version 1 named the address ``ip`` and knew nothing of failover; version 2
    calls it ``address`` (a host name is allowed) and adds the DataMiner ID and failover pairing.
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


def upcast_agent_registered_v1(payload: dict[str, Any]) -> dict[str, Any]:
    """AgentRegistered v1 -> v2: ``ip`` becomes ``address``; no failover pairing was known."""
    upcast = {key: value for key, value in payload.items() if key != "ip"}
    upcast["address"] = payload["ip"]
    upcast.setdefault("dataminer_id", None)
    upcast.setdefault("failover_partner", None)
    upcast.setdefault("failover_role", None)
    return upcast


AGENT_EVENTS: tuple[type[Event], ...] = (AgentRegistered,)
AGENT_UPCASTERS = {("AgentRegistered", 1): upcast_agent_registered_v1}
