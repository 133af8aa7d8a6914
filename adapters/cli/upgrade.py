"""``dma-upgrade upgrade``: planning, starting and controlling rollouts."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated
from uuid import UUID

import typer
from rich.table import Table
from rich.text import Text

from adapters.audit_export import parse_time
from adapters.bootstrap import Container
from adapters.cli.context import RealWaiter, actor, gateway_for, out, session
from adapters.cli.errors import reports_errors
from adapters.cli.live import run_in_foreground
from engine.rollout_events import RolloutPlanned
from engine.service import AgentSelection, OptionOverrides, RolloutSpec, UpgradeService

app = typer.Typer(no_args_is_help=True, help="Rollouts: upgrade agents with a package.")

EXIT_FAILED_ROLLOUT = 9


@app.command("start")
@reports_errors
def start(ctx: typer.Context,
          package: Annotated[str, typer.Option(help="package SHA-256 (or 8+ leading digits) or file name")],
          all_agents_in_cluster: Annotated[str | None, typer.Option(help="upgrade every agent of a cluster")] = None,
          agent: Annotated[list[str] | None, typer.Option(help="an agent by name (repeatable)")] = None,
          ip: Annotated[list[str] | None, typer.Option(help="an agent by IP address (repeatable)")] = None,
          extract_all: Annotated[bool | None, typer.Option("--extract-all/--no-extract-all")] = None,
          delayed_start: Annotated[bool | None, typer.Option("--delayed-start/--no-delayed-start")] = None,
          auto_start: Annotated[bool | None, typer.Option("--auto-start/--no-auto-start")] = None,
          stop_snmp: Annotated[bool | None, typer.Option("--stop-snmp/--no-stop-snmp")] = None,
          reboot: Annotated[bool | None, typer.Option("--reboot/--no-reboot")] = None,
          failover_policy: Annotated[str, typer.Option(
              help="default|simultaneous|backup-first|backup-first-switch-back")] = "default",
          upload_only: Annotated[bool, typer.Option(help="distribute the package without installing")] = False,
          max_concurrent: Annotated[str | None, typer.Option(help="N or P% of the agents at once")] = None,
          max_errors: Annotated[str | None, typer.Option(help="N or P% failures before no new agent starts")] = None,
          at: Annotated[str | None, typer.Option(help="start at this time (ISO 8601, UTC when no zone)")] = None,
          dry_run: Annotated[bool, typer.Option(help="show the plan, start nothing")] = False,
          wait: Annotated[bool, typer.Option(help="run the engine in the foreground until the end")] = False,
          ) -> None:
    """Plan a rollout (shown with --dry-run) or start it."""
    start_at = parse_time(at, "--at") if at is not None else None
    spec = RolloutSpec(package=package, start_at=start_at,
                       selection=AgentSelection(cluster=all_agents_in_cluster, names=tuple(agent or ()),
                                                addresses=tuple(ip or ())),
                       overrides=OptionOverrides(extract_all=extract_all, delayed_start=delayed_start,
                                                 auto_start=auto_start, stop_snmp=stop_snmp, reboot=reboot),
                       failover_policy=failover_policy, upload_only=upload_only,
                       max_concurrent=max_concurrent, max_errors=max_errors)
    with session(ctx) as s:
        if start_at is not None and start_at <= s.container.clock.now():
            out.print(f"--at {start_at.isoformat()} is in the past: the rollout starts now")
            spec = replace(spec, start_at=None)
        s.service.gateway = gateway_for(s.container.settings, s.service)
        if dry_run:
            show_plan(s.service.plan(spec, actor=actor()), title="Plan (dry run: nothing started)")
            return
        planned = s.service.start_rollout(spec, actor=actor())
        show_plan(planned, title=f"Rollout {planned.rollout_id} started")
        if wait:
            _run(s.container, s.service, planned.rollout_id)


@app.command("run")
@reports_errors
def run(ctx: typer.Context, rollout: Annotated[UUID, typer.Argument()]) -> None:
    """Run the engine in the foreground on a rollout until it ends."""
    with session(ctx) as s:
        _run(s.container, s.service, rollout)


def _run(container: Container, service: UpgradeService, rollout_id: UUID) -> None:
    gateway = service.gateway or gateway_for(container.settings, service)
    service.gateway = gateway
    ended = run_in_foreground(container, service, gateway, RealWaiter(), rollout_id, out)
    out.print(f"rollout {rollout_id}: {ended.state.value}" + (f" ({ended.end_reason})" if ended.end_reason else ""))
    if ended.state.value != "Completed":
        raise typer.Exit(EXIT_FAILED_ROLLOUT)


def _control(ctx: typer.Context, rollout: UUID, command: str) -> None:
    with session(ctx) as s:
        state = s.service.control(rollout, command, actor=actor()).state
    out.print(f"rollout {rollout}: {command} recorded, now {state.value}")


@app.command("pause")
@reports_errors
def pause(ctx: typer.Context, rollout: Annotated[UUID, typer.Argument()]) -> None:
    """No new agent starts; agents in flight finish."""
    _control(ctx, rollout, "pause")


@app.command("resume")
@reports_errors
def resume(ctx: typer.Context, rollout: Annotated[UUID, typer.Argument()]) -> None:
    """Let a paused rollout go on."""
    _control(ctx, rollout, "resume")


@app.command("cancel")
@reports_errors
def cancel(ctx: typer.Context, rollout: Annotated[UUID, typer.Argument()]) -> None:
    """Cancel agents not yet installing; those installing finish."""
    _control(ctx, rollout, "cancel")


@app.command("retry-failed")
@reports_errors
def retry_failed(ctx: typer.Context, rollout: Annotated[UUID, typer.Argument()]) -> None:
    """Try the failed agents of a failed rollout again."""
    _control(ctx, rollout, "retry-failed")


def show_plan(planned: RolloutPlanned, *, title: str) -> None:
    """Print a plan: agents in order with the states they will visit, then the warnings."""
    table = Table("agent", "cluster", "from", "to", "steps", "after", title=title, title_justify="left")
    for agent in planned.agents:
        table.add_row(agent.name, agent.cluster or "", agent.current_version, planned.package_version,
                      " → ".join(step.value for step in agent.plan.steps), ", ".join(agent.after))
    out.print(table)
    options = planned.options
    out.print(f"policy {planned.failover_policy.value} · max concurrent {planned.max_concurrent} · "
              f"max errors {planned.max_errors} · extract all {options.extract_all} · delayed start "
              f"{options.delayed_start} · auto start {options.auto_start} · stop SNMP {options.stop_snmp} · "
              f"reboot {options.reboot}" + (" · upload only" if planned.upload_only else ""))
    for warning in planned.warnings:
        out.print(Text(f"warning: {warning}", style="yellow"))

