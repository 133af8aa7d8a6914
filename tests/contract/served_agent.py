"""One simulated agent served over HTTP on a loopback port, as ``agent-sim`` serves it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any

from dma_upgrade.adapters.agents.simulated_gateway import SimulatedAgent, SimulatedAgentGateway
from dma_upgrade.adapters.agents.simulator import agent_app, serve_in_thread
from dma_upgrade.engine.ports import AgentAddress

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


@contextmanager
def served_agent(version: str) -> Iterator[tuple[SimulatedAgentGateway, AgentAddress]]:
    """``dma-01`` on ``version``, served on a loopback port; its address is where it is served."""
    holder: dict[str, Any] = {}

    class Late:
        """The agent reports the address it is served at: serve first, build the agent for it then."""

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            await holder["app"](scope, receive, send)

    with serve_in_thread(Late()) as address:
        simulation = SimulatedAgentGateway([SimulatedAgent(name="dma-01", address=address, cluster="north",
                                                           version=version)])
        holder["app"] = agent_app(simulation, "dma-01", heartbeat_seconds=0.05, phase_ack_timeout=5)
        yield simulation, AgentAddress(name="dma-01", address=address)
