"""``dma-upgrade upgrade``: planning, starting and controlling rollouts."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

import typer
from rich.table import Table
from rich.text import Text

from dma_upgrade.adapters.audit.export import parse_time
from dma_upgrade.adapters.cli.backend import Backend, open_backend, request
from dma_upgrade.adapters.cli.context import out
from dma_upgrade.adapters.cli.errors import reports_errors
from dma_upgrade.adapters.clock import utc_text
from dma_upgrade.adapters.shapes.models import PlanOut, ResolveIn, RolloutIn
from dma_upgrade.engine import commands
from dma_upgrade.engine.errors import InvalidInput
from dma_upgrade.engine.rollout import RolloutState
from dma_upgrade.engine.rollout_events import FailoverPolicy

app = typer.Typer(no_args_is_help=True, help="Rollouts: upgrade agents with a package.")

EXIT_FAILED_ROLLOUT = 9


@app.command("start")
@reports_errors
def start(ctx: typer.Context,
          package: Annotated[str, typer.Option(help="package SHA-256 (or 8+ leading digits) or file name")],
          all_agents_in_cluster: Annotated[list[str] | None, typer.Option(
              help="upgrade every agent of a cluster (repeatable: several clusters)")] = None,
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
          allow_partial_pair: Annotated[bool, typer.Option(
              help="under a backup-first policy, upgrade a member of a failover pair without its partner (or of an "
                   "incomplete pair): on its own, without a switch-over")] = False,
          reinstall: Annotated[bool, typer.Option(
              help="let a Full package install the version an agent runs already (refused otherwise)")] = False,
          allow_downgrade: Annotated[bool, typer.Option(
              help="let a Full package install a version older than an agent runs (refused otherwise)")] = False,
          skip_path_check: Annotated[bool, typer.Option(
              help="plan a jump that breaks the documented upgrade path (refused otherwise)")] = False,
          max_concurrent: Annotated[str | None, typer.Option(help="N or P% of the agents at once")] = None,
          max_errors: Annotated[str | None, typer.Option(help="N or P% failures before no new agent starts")] = None,
          at: Annotated[str | None, typer.Option(help="start at this time (ISO 8601, UTC when no zone)")] = None,
          dry_run: Annotated[bool, typer.Option(help="show the plan, start nothing")] = False,
          wait: Annotated[bool, typer.Option(help="follow the rollout live until it ends (the engine runs here, "
                                                    "or on the --server)")] = False,
          ) -> None:
    """Plan a rollout (shown with --dry-run) or start it."""
    start_at = parse_time(at, "--at") if at is not None else None
    body = request(RolloutIn, package=package, clusters=all_agents_in_cluster or [], agents=agent or [],
                   addresses=ip or [], extract_all=extract_all, delayed_start=delayed_start, auto_start=auto_start,
                   stop_snmp=stop_snmp, reboot=reboot, failover_policy=FailoverPolicy.parse(failover_policy),
                   upload_only=upload_only, max_concurrent=max_concurrent, max_errors=max_errors, start_at=start_at,
                   allow_partial_pair=allow_partial_pair, reinstall=reinstall, allow_downgrade=allow_downgrade,
                   skip_path_check=skip_path_check)
    with open_backend(ctx) as backend:
        planned = backend.plan(body) if dry_run else backend.start_rollout(body)
        if start_at is not None and planned.start_at is None:
            out.print(f"--at {start_at.isoformat()} is in the past: the rollout starts now")
        if dry_run:
            show_plan(planned, title="Plan (dry run: nothing started)")
            return
        show_plan(planned, title=announcement(planned))
        if wait:
            _run(backend, UUID(planned.rollout_id))


def announcement(planned: PlanOut) -> str:
    """The title of a rollout just recorded: ``Rollout ID started``, or ``Rollout ID scheduled for T`` when it
    starts later."""
    if planned.start_at is None:
        return f"Rollout {planned.rollout_id} started"
    return f"Rollout {planned.rollout_id} scheduled for {utc_text(planned.start_at)}"


@app.command("run")
@reports_errors
def run(ctx: typer.Context, rollout: Annotated[UUID, typer.Argument()]) -> None:
    """Follow a rollout until it ends: run the engine on it here, or watch the server run it (--server)."""
    with open_backend(ctx) as backend:
        _run(backend, rollout)


def _run(backend: Backend, rollout_id: UUID) -> None:
    ended = backend.run(rollout_id, out)
    out.print(f"rollout {rollout_id}: {ended.state}" + (f" ({ended.end_reason})" if ended.end_reason else ""))
    if ended.state != RolloutState.COMPLETED.value:
        raise typer.Exit(EXIT_FAILED_ROLLOUT)


_CONTROLS: tuple[tuple[type[commands.RolloutCommand], str], ...] = (
    (commands.PauseRollout, "No new agent starts; agents in flight finish."),
    (commands.ResumeRollout, "Let a paused rollout go on."),
    (commands.CancelRollout, "Cancel agents not yet installing; those installing finish."),
    (commands.RetryFailedAgents, "Try the failed agents of a failed rollout again."),
    (commands.ContinueRollout,
     "Finish a failed or cancelled rollout with its package: the agents that did not complete run again."),
)
"""Each control of a rollout, in the order ``--help`` lists them, with its help line."""


def _add_control(command: type[commands.RolloutCommand], help_text: str) -> None:
    """Register ``dma-upgrade upgrade {command.name} ROLLOUT``, which records that control."""

    @app.command(command.name, help=help_text)
    @reports_errors
    def control(ctx: typer.Context, rollout: Annotated[UUID, typer.Argument()]) -> None:
        with open_backend(ctx) as backend:
            state = backend.control(command(rollout)).state
        out.print(f"rollout {rollout}: {command.name} recorded, now {state}")


for _command, _help in _CONTROLS:
    _add_control(_command, _help)


@app.command("resolve")
@reports_errors
def resolve(ctx: typer.Context, rollout: Annotated[UUID, typer.Argument()],
            agent: Annotated[str, typer.Argument(help="the agent whose upgrade has a step in doubt")],
            applied: Annotated[bool, typer.Option("--applied", help="the step took effect: record it done")] = False,
            not_applied: Annotated[bool, typer.Option(
                "--not-applied", help="the step did not take effect: the engine sends it again (same key)")] = False,
            ) -> None:
    """Decide a step in doubt (its outcome unknown to the engine): --applied or --not-applied."""
    if applied == not_applied:
        raise InvalidInput("give exactly one of --applied and --not-applied")
    body = request(ResolveIn, agent=agent, applied=applied)
    with open_backend(ctx) as backend:
        resolved = backend.resolve(rollout, body.agent, body.applied)
    verdict = "applied" if resolved.applied else "not applied: the engine sends it again under the same key"
    out.print(Text(f"rollout {rollout}: {resolved.agent} {resolved.step.replace('_', ' ')} (attempt "
                   f"{resolved.attempt}) recorded as {verdict}"
                   + (f"; the agent runs {resolved.version_after}" if resolved.version_after else "")
                   + f"; the upgrade is {resolved.state}"))


def show_plan(planned: PlanOut, *, title: str) -> None:
    """Print a plan: agents in order with the states they will visit, then what the failover pairs go through
    (the agents' notes, each once) and the warnings."""
    table = Table("agent", "cluster", "from", "to", "steps", "after", title=title, title_justify="left")
    for agent in planned.agents:
        table.add_row(agent.name, agent.cluster or "", agent.current_version, planned.package_version,
                      " → ".join(agent.steps), ", ".join(agent.after))
    out.print(table)
    options = planned.options
    out.print(f"policy {planned.failover_policy} · max concurrent {planned.max_concurrent} · "
              f"max errors {planned.max_errors} · extract all {options['extract_all']} · delayed start "
              f"{options['delayed_start']} · auto start {options['auto_start']} · stop SNMP "
              f"{options['stop_snmp']} · reboot {options['reboot']}"
              + (" · upload only" if planned.upload_only else "")
              + (" · allow partial pair" if planned.allow_partial_pair else "")
              + (" · reinstall" if planned.reinstall else "")
              + (" · allow downgrade" if planned.allow_downgrade else "")
              + (" · skip path check" if planned.skip_path_check else ""))
    pair_notes = dict.fromkeys(note for agent in planned.agents for note in agent.notes)
    for note in pair_notes:
        out.print(Text(f"note: {note}"))
    for warning in planned.warnings:
        out.print(Text(f"warning: {warning}", style="yellow"))

