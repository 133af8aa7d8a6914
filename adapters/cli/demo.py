"""The main job on a fresh machine: a simulated cluster upgraded end to end on a fresh embedded database."""

from __future__ import annotations

from pathlib import Path
from uuid import UUID

from rich.console import Console
from rich.table import Table

from dma_upgrade.adapters.agents.simulated_gateway import SimulatedAgent, modern_facts
from dma_upgrade.adapters.bootstrap import App, Simulation, bootstrap
from dma_upgrade.adapters.cli.context import caught_up
from dma_upgrade.adapters.cli.live import run_in_foreground
from dma_upgrade.adapters.packages.archive import build_package, inspect_package
from dma_upgrade.adapters.read.progress_queries import PROGRESS, current_progress
from dma_upgrade.adapters.settings import Settings
from dma_upgrade.engine.agent_events import FailoverRole
from dma_upgrade.engine.hashchain import verify_chain
from dma_upgrade.engine.packages import CheckName, Comparison, PackageKind, PackageManifest, PrerequisiteCheck
from dma_upgrade.engine.rollout import RolloutState
from dma_upgrade.engine.rollout_events import FailoverPolicy
from dma_upgrade.engine.service import AgentSelection, OptionOverrides, RolloutSpec
from dma_upgrade.engine.upgrade_events import Step
from dma_upgrade.engine.versions import parse_version

CLUSTER = "dms-demo"
FROM_VERSION = "10.4.0.0-14112"
TO_VERSION = "10.4.9.0-14794"
AGENTS = [
    SimulatedAgent(name="dma-01", address="10.20.0.11", cluster=CLUSTER, version=FROM_VERSION),
    SimulatedAgent(name="dma-02", address="10.20.0.12", cluster=CLUSTER, version=FROM_VERSION),
    SimulatedAgent(name="dma-03", address="10.20.0.13", cluster=CLUSTER, version=FROM_VERSION),
    SimulatedAgent(name="dma-04", address="10.20.0.14", cluster=CLUSTER, version=FROM_VERSION),
    SimulatedAgent(name="dma-main", address="10.20.0.21", cluster=CLUSTER, version=FROM_VERSION,
                   partner="dma-backup"),
    SimulatedAgent(name="dma-backup", address="10.20.0.22", cluster=CLUSTER, version=FROM_VERSION,
                   active=False),
]
ROLES = {"dma-main": (FailoverRole.MAIN, "dma-backup"), "dma-backup": (FailoverRole.BACKUP, "dma-main")}
STEP_SECONDS = {Step.UPLOAD: 0.6, Step.STOP_SNMP: 0.3, Step.INSTALL: 2.4, Step.SWITCH_OVER: 0.4,
                Step.REBOOT: 0.8, Step.START: 0.5}


def run_demo(data_dir: Path, console: Console, *, step_scale: float = 1.0) -> bool:
    """Register 6 simulated agents, build and upload a package, upgrade the whole cluster, verify."""
    settings = Settings(database_url=None, data_dir=data_dir)
    console.print(f"[bold]dma-upgrade demo[/] · embedded database {settings.resolved_database_url}")
    app = bootstrap(settings, simulation=Simulation(AGENTS, {s: d * step_scale for s, d in STEP_SECONDS.items()}))
    service = app.service
    try:
        for agent in AGENTS:
            role, partner = ROLES.get(agent.name, (None, None))
            service.register_agent(name=agent.name, address=agent.address, version=agent.version,
                                   cluster=agent.cluster, failover_role=role, failover_partner=partner,
                                   facts=modern_facts(agent.version), actor="demo")
        console.print(f"registered {len(AGENTS)} agents in cluster {CLUSTER} (dma-main/dma-backup are a "
                      f"failover pair)")
        manifest = PackageManifest.for_version(parse_version(TO_VERSION), PackageKind.FULL, prerequisites=(
            PrerequisiteCheck(name=CheckName.MINIMUM_VERSION, comparison=Comparison.AT_LEAST,
                              required=("10.3.0.0",)),
            PrerequisiteCheck(name=CheckName.DOTNET, comparison=Comparison.INCLUDES, required=("dotnet-8",))))
        path = build_package(manifest, data_dir / "built")
        inspected = inspect_package(path)
        app.packages.put(path, inspected.sha256)
        service.record_upload(sha256=inspected.sha256, file_name=path.name, size=inspected.size,
                              manifest=inspected.manifest, actor="demo")
        console.print(f"built and uploaded {path.name} (sha256 {inspected.sha256[:12]}, {inspected.size} bytes)")
        service.set_setting("delayed-start-seconds", str(max(1, round(step_scale))), actor="demo")
        planned = service.start_rollout(RolloutSpec(
            package=inspected.sha256, selection=AgentSelection(cluster=CLUSTER),
            overrides=OptionOverrides(reboot=True), failover_policy=FailoverPolicy.BACKUP_FIRST), actor="demo")
        console.print(f"rollout {planned.rollout_id}: whole cluster, policy backup-first, reboot after upgrade")
        ended = run_in_foreground(app, planned.rollout_id, console)
        console.print()
        _summary(app, planned.rollout_id, console)
        verdict = verify_chain(app.store.read_records(page_size=5000))
        console.print(f"audit verify: {verdict.verified} events, hash chain "
                      + ("intact" if verdict.ok else f"BROKEN at {verdict.broken_at}"))
        return ended.state is RolloutState.COMPLETED and verdict.ok
    finally:
        app.close()


SUMMARY_COLUMNS = ("agent", "role", "from", "to", "state", "steps done", "step retries", "installing (s)",
                   "whole upgrade (s)")
"""The summary's columns: the steps done of those planned, the steps sent again, the seconds spent installing and
over the whole upgrade."""


def _summary(app: App, rollout_id: UUID, console: Console) -> None:
    """The demo's end: each agent's upgrade in numbers, the agents' version histories and the package's status."""
    service = app.service
    caught_up(app, PROGRESS)  # this command is the only process: keeping its read model up is its job
    [(_, agents)] = current_progress(app, rollout_id).value
    table = Table(*SUMMARY_COLUMNS, title="Summary", title_justify="left")
    for agent in sorted(agents, key=lambda a: a["plan_order"]):
        durations = agent["durations"]
        table.add_row(agent["agent"], agent["failover_role"] or "", agent["version_from"], agent["version_after"] or "",
                      agent["state"], f"{agent['steps_done']} of {agent['steps_planned']}", str(agent["retries"]),
                      f"{durations.get('Installing', 0.0):.1f}", f"{sum(durations.values()):.1f}")
    console.print(table)
    history = Table("agent", "version history", title="Upgrade history (VersionHistory.txt)",
                    title_justify="left")
    for record in service.agents():
        history.add_row(record.name, " → ".join(record.version_history))
    console.print(history)
    for package in service.packages():
        console.print(f"package {package.file_name}: {package.status} (used by rollout {package.used_by})")
