"""The registered inventory simulated: what ``DMA_UPGRADE_AGENT_GATEWAY=simulated`` answers with, no agents needed."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable

from dma_upgrade.adapters.agents.simulated_gateway import SimulatedAgent, SimulatedAgentGateway
from dma_upgrade.engine.inventory import AgentRecord
from dma_upgrade.engine.upgrade_events import Step


class InventoryLookup:
    """Names the agent registered at an address, from ``agents`` (a read of the inventory, not the service).

    The inventory is read at the first lookup and again whenever an address is not in the last read, so an
    agent registered later is found from its first call on."""

    def __init__(self, agents: Callable[[], Iterable[AgentRecord]]) -> None:
        self._agents = agents
        self._known: dict[str, AgentRecord] | None = None
        self._lock = threading.Lock()

    def __call__(self, address: str) -> SimulatedAgent | None:
        with self._lock:
            if self._known is None or address not in self._known:
                self._known = {agent.address: agent for agent in self._agents()}
            record = self._known.get(address)
        if record is None:
            return None
        return SimulatedAgent(name=record.name, address=record.address, cluster=record.cluster,
                              version=record.version, facts=record.facts)


def simulated_inventory(agents: Callable[[], Iterable[AgentRecord]], step_seconds: float) -> SimulatedAgentGateway:
    """A simulation of the registered agents (``agents`` reads them), each step taking ``step_seconds``; an agent
    is simulated from its first call on, as the inventory has it then."""
    return SimulatedAgentGateway([], sleeper=time.sleep, step_seconds=dict.fromkeys(Step, step_seconds),
                                 discover=InventoryLookup(agents))
