"""``dma-upgrade agents``: the inventory."""

from __future__ import annotations

from typing import Annotated

import typer

from dma_upgrade.adapters.cli.backend import open_backend, request
from dma_upgrade.adapters.cli.context import out
from dma_upgrade.adapters.cli.errors import reports_errors
from dma_upgrade.adapters.cli.output import JsonAlias, Output, OutputFormat, print_json, wants_json
from dma_upgrade.adapters.cli.tables import print_table
from dma_upgrade.adapters.shapes.models import AgentIn, AgentPortsIn, FactsModel
from dma_upgrade.engine.agent_events import FailoverRole
from dma_upgrade.engine.inventory import AgentRecord, clusters_on_mixed_versions

app = typer.Typer(no_args_is_help=True, help="The agents (DMAs) that can be upgraded.")


@app.command("add")
@reports_errors
def add(ctx: typer.Context,
        name: Annotated[str, typer.Argument(help="the agent's name")],
        address: Annotated[str, typer.Option(help="IP address or host name")],
        version: Annotated[str, typer.Option(help="DataMiner version, e.g. 10.4.9.0-14794")],
        cluster: Annotated[str | None, typer.Option(help="the DataMiner System it belongs to")] = None,
        dataminer_id: Annotated[int | None, typer.Option(help="DataMiner ID")] = None,
        failover_partner: Annotated[str | None, typer.Option(help="the other agent of its pair")] = None,
        failover_role: Annotated[FailoverRole | None, typer.Option(help="main or backup")] = None,
        os_name: Annotated[str, typer.Option("--os", help="operating system")] = "Windows Server 2022",
        component: Annotated[list[str] | None, typer.Option(help="installed component (repeatable)")] = None,
        database: Annotated[str, typer.Option(help="indexing database in use")] = "opensearch",
        ) -> None:
    """Register an agent with the facts its prerequisite checks are judged on."""
    facts = request(FactsModel, version=version, os=os_name, components=component or ["dotnet-8", "aspnetcore-8"],
                    database=database)
    agent = request(AgentIn, name=name, address=address, version=version, cluster=cluster,
                    dataminer_id=dataminer_id, failover_partner=failover_partner, failover_role=failover_role,
                    facts=facts)
    with open_backend(ctx) as backend:
        record = backend.add_agent(agent)
    out.print(f"registered agent {record.name} ({record.address}) on {record.version}")


@app.command("list")
@reports_errors
def list_agents(ctx: typer.Context, output: Output = OutputFormat.TABLE, json_alias: JsonAlias = False) -> None:
    """Every agent with its version, and a warning for each cluster on mixed versions."""
    with open_backend(ctx) as backend:
        agents = backend.agents()
    if wants_json(output, json_alias):
        print_json(agents)
        return
    print_table(("agent", "address", "cluster", "version", "failover", "state"),
                ((agent.name, agent.address, agent.cluster or "", agent.version,
                  f"{agent.failover_role.value} of pair with {agent.failover_partner}" if agent.failover_role else "",
                  "stopped: needs a manual start" if agent.needs_manual_start else "")
                 for agent in agents))
    records = (AgentRecord(name=a.name, address=a.address, cluster=a.cluster, version=a.version) for a in agents)
    for cluster, versions in clusters_on_mixed_versions(records).items():
        out.print(f"[yellow]warning: cluster {cluster} runs mixed versions: {', '.join(versions)}[/]")


@app.command("set")
@reports_errors
def set_agent(ctx: typer.Context,
              name: Annotated[str, typer.Argument(help="the agent")],
              snmp_port: Annotated[int | None, typer.Option(help="UDP port of SLSNMPAgent (DataMiner's SNMP agent)")]
              = None,
              windows_snmp_port: Annotated[int | None, typer.Option(help="UDP port of the Windows SNMP service")]
              = None,
              ) -> None:
    """Set an agent's SNMP ports (an event): with Stop SNMP off, a rollout warns while both use one port."""
    ports = request(AgentPortsIn, snmp_agent_port=snmp_port, windows_snmp_port=windows_snmp_port)
    with open_backend(ctx) as backend:
        agent = backend.set_agent_ports(name, ports)
    facts = agent.facts  # an agent that reported no facts was refused
    if facts is not None:
        out.print(f"agent {agent.name}: SLSNMPAgent on UDP {facts.snmp_agent_port}, Windows SNMP on UDP "
                  f"{facts.windows_snmp_port}")


@app.command("start")
@reports_errors
def start(ctx: typer.Context, name: Annotated[str, typer.Argument(help="the agent left stopped")]) -> None:
    """Start the DataMiner of an agent an upgrade left stopped (Auto Start was off)."""
    with open_backend(ctx) as backend:
        backend.start_agent(name)
    out.print(f"started agent {name}")
