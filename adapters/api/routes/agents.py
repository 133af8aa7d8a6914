"""``/api/v1/agents``: the inventory."""

from __future__ import annotations

from functools import partial

from fastapi import APIRouter, Response

from dma_upgrade.adapters.api.context import Context, Operator, Viewer
from dma_upgrade.adapters.api.errors import ERROR_RESPONSES
from dma_upgrade.adapters.api.models import AgentByAddressIn
from dma_upgrade.adapters.read.history_queries import version_history as version_history_rows
from dma_upgrade.adapters.shapes.models import AgentIn, AgentOut, AgentPortsIn, FactsModel, VersionHistoryOut
from dma_upgrade.engine.errors import NotFound

router = APIRouter(prefix="/api/v1/agents", tags=["agents"], responses=ERROR_RESPONSES)


@router.get("")
def list_agents(context: Context, _: Viewer) -> list[AgentOut]:
    """Every registered agent with its version, failover pair and facts."""
    return [AgentOut.of(a) for a in context.service.agents()]


@router.post("", status_code=201)
def add_agent(body: AgentIn, context: Context, caller: Operator) -> AgentOut:
    """Register an agent with the facts its prerequisite checks are judged on."""
    return AgentOut.of(body.register(context.service, actor=caller.name))


@router.post("/by-address", status_code=201)
async def add_agent_by_address(body: AgentByAddressIn, context: Context, caller: Operator) -> AgentOut:
    """Add the agent at an IP address, asking it who it is (an agent known already is returned as is).

    Waits on the agent, so 503 while ``DMA_UPGRADE_API_AGENT_CALLS`` such calls wait already."""
    add = partial(context.service.add_agent_by_ip, body.address.strip(), actor=caller.name)
    return AgentOut.of(await context.agent_calls.run(add))


@router.get("/{name}")
def get_agent(name: str, context: Context, _: Viewer) -> AgentOut:
    """One agent."""
    return AgentOut.of(context.service.agent(name))


@router.get("/{name}/facts")
def get_facts(name: str, context: Context, _: Viewer) -> FactsModel:
    """What the agent last reported about itself."""
    record = context.service.agent(name)
    if record.facts is None:
        raise NotFound(f"agent {name!r} has reported no facts")
    return FactsModel.of(record.facts)


@router.put("/{name}/facts")
def report_facts(name: str, body: FactsModel, context: Context, caller: Operator) -> AgentOut:
    """Record new facts for an agent (an event), e.g. after a component was installed."""
    return AgentOut.of(context.service.report_facts(name, body.to_engine(), actor=caller.name))


@router.put("/{name}/ports")
def set_ports(name: str, body: AgentPortsIn, context: Context, caller: Operator) -> AgentOut:
    """Set the UDP ports of the agent's SLSNMPAgent and Windows SNMP service (an event when they change): with Stop
    SNMP off, a rollout warns while both use the same port."""
    return AgentOut.of(body.apply(context.service, name, actor=caller.name))


@router.post("/{name}/start")
async def start_agent(name: str, context: Context, caller: Operator) -> AgentOut:
    """Start the DataMiner of an agent an upgrade left stopped (Auto Start was off).

    Waits on the agent, so 503 while ``DMA_UPGRADE_API_AGENT_CALLS`` such calls wait already."""
    start = partial(context.service.start_agent_manually, name, actor=caller.name)
    return AgentOut.of(await context.agent_calls.run(start))


@router.get("/{name}/history")
def version_history(name: str, context: Context, _: Viewer, response: Response) -> list[VersionHistoryOut]:
    """The agent's VersionHistory.txt: every version it ran, oldest first (a projection, as it is: the headers
    say how far behind)."""
    reading = version_history_rows(context.app, name)
    response.headers.update(reading.lag.headers() if reading.lag else {})
    return [VersionHistoryOut.of(row) for row in reading.value]
