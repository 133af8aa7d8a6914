"""Where a command's work happens: the local database, or an API server (``--server``), behind one interface.

Both implementations answer with the public data shapes (``adapters/shapes``): the local one builds them
straight from the service and the queries, the remote one parses the server's JSON into them. So every
command renders one kind of data whichever way it came, and prints the same lines. Reads of a read model
answer with how far behind it was (``Reading``); on the local database the command catches the projections
up first (it is the only process that would: the queries themselves only read).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, TextIO, TypeVar
from uuid import UUID

import pydantic
import typer
from rich.console import Console

from dma_upgrade.adapters.audit.check import check_audit
from dma_upgrade.adapters.audit.export import ExportFormat, ExportSummary, Selection, export_records, select_records
from dma_upgrade.adapters.bootstrap import App
from dma_upgrade.adapters.cli.context import actor, caught_up, server_of, session
from dma_upgrade.adapters.cli.errors import stderr
from dma_upgrade.adapters.cli.live import run_in_foreground
from dma_upgrade.adapters.cli.remote import HttpBackend
from dma_upgrade.adapters.packages.upload import upload_package
from dma_upgrade.adapters.progress_report import Reporter
from dma_upgrade.adapters.read.freshness import Reading
from dma_upgrade.adapters.read.history_queries import PACKAGE_HISTORY, package_history, version_history
from dma_upgrade.adapters.read.progress_queries import PROGRESS, current_progress, progress_as_of
from dma_upgrade.adapters.shapes.models import (
    AgentIn,
    AgentOut,
    AgentPortsIn,
    AuditVerifyOut,
    DoubtResolvedOut,
    EnginesOut,
    PackageHistoryOut,
    PackageOut,
    PlanOut,
    ProjectionStatusOut,
    RolloutIn,
    RolloutProgressOut,
    RolloutStateOut,
    VersionHistoryOut,
)
from dma_upgrade.adapters.shapes.paths import PathOut
from dma_upgrade.adapters.sql.leases import lease_overview
from dma_upgrade.engine.commands import RolloutCommand
from dma_upgrade.engine.errors import InvalidInput, describe_validation
from dma_upgrade.engine.path_advice import PathQuery

M = TypeVar("M", bound=pydantic.BaseModel)
R = TypeVar("R")


def request(model: type[M], **fields: Any) -> M:
    """A request body from a command's options; ``InvalidInput`` naming the fields that are wrong (spelled as
    options are: ``max-concurrent``)."""
    try:
        return model(**fields)
    except pydantic.ValidationError as error:
        problems = [{**problem, "loc": tuple(str(part).replace("_", "-") for part in problem["loc"])}
                    for problem in error.errors(include_url=False, include_input=False)]
        raise InvalidInput(describe_validation(problems)) from None


class Backend(Protocol):
    """What the command line asks of the product; each answer is the public data shape of the same data."""

    @property
    def location(self) -> str:
        """Where uploaded packages are kept: a local folder or the server's URL."""
        ...

    def agents(self) -> list[AgentOut]:
        """Every registered agent."""
        ...

    def add_agent(self, agent: AgentIn) -> AgentOut:
        """Register an agent."""
        ...

    def start_agent(self, name: str) -> AgentOut:
        """Start the DataMiner of an agent an upgrade left stopped."""
        ...

    def set_agent_ports(self, name: str, ports: AgentPortsIn) -> AgentOut:
        """Set the UDP ports of an agent's SNMP services."""
        ...

    def upgrade_path(self, query: PathQuery) -> list[PathOut]:
        """The chain of versions to install, with the packages covering each hop."""
        ...

    def packages(self) -> list[PackageOut]:
        """Every uploaded package."""
        ...

    def upload(self, file: Path) -> PackageOut:
        """Validate and store a package file, and record the upload."""
        ...

    def plan(self, request: RolloutIn) -> PlanOut:
        """The plan a rollout would follow (records nothing)."""
        ...

    def start_rollout(self, request: RolloutIn) -> PlanOut:
        """Plan and start a rollout."""
        ...

    def control(self, command: RolloutCommand) -> RolloutStateOut:
        """Pause, resume, cancel, retry-failed or continue a rollout."""
        ...

    def resolve(self, rollout_id: UUID, agent: str, applied: bool) -> DoubtResolvedOut:
        """Record an operator's decision on the step in doubt of ``agent``'s upgrade in the rollout."""
        ...

    def run(self, rollout_id: UUID, console: Console) -> RolloutStateOut:
        """Show the rollout's progress live until it ends (driving it here, or following the server)."""
        ...

    def settings(self) -> dict[str, str]:
        """Every system setting."""
        ...

    def set_setting(self, key: str, value: str) -> dict[str, str]:
        """Change one setting; returns every setting."""
        ...

    def progress(self, rollout_id: UUID | None = None) -> Reading[list[RolloutProgressOut]]:
        """Every rollout's progress now (or one rollout's), and how far behind the progress read model is."""
        ...

    def progress_at(self, rollout_id: UUID, *, at_time: datetime | None,
                    at_position: int | None) -> RolloutProgressOut:
        """One rollout's progress as it was at a time or a log position."""
        ...

    def package_history(self) -> Reading[list[PackageHistoryOut]]:
        """Every package ever uploaded, with its rollouts (and the package history read model's lag)."""
        ...

    def version_history(self, agent: str) -> Reading[list[VersionHistoryOut]]:
        """One agent's VersionHistory.txt (and the package history read model's lag)."""
        ...

    def verify_audit(self, anchor: str | None, reporter: Reporter | None = None) -> AuditVerifyOut:
        """Walk the hash chain (and check an anchor), telling ``reporter`` how far it got (locally only)."""
        ...

    def export_audit(self, export_format: ExportFormat, selection: Selection, stream: TextIO,
                     reporter: Reporter | None = None) -> ExportSummary:
        """Write the selected audit trail to ``stream``, ending with its anchor line, telling ``reporter`` how far it
        got (locally only)."""
        ...

    def projections(self) -> list[ProjectionStatusOut]:
        """Each projection's checkpoint and lag."""
        ...

    def engines(self) -> EnginesOut:
        """The engine processes sharing the database and what each drives."""
        ...


def noted(reading: Reading[R]) -> R:
    """What was read; first a note on stderr when its read model was behind (stdout stays the data)."""
    note = reading.lag.note() if reading.lag is not None else None
    if note is not None:
        stderr.print(note, markup=False)
    return reading.value


class LocalBackend:
    """The product on the configured database, in this process (the engine runs here for ``run``)."""

    def __init__(self, app: App, actor: str) -> None:
        self._app = app
        self._service = app.service
        self._actor = actor

    @property
    def location(self) -> str:
        return str(self._app.packages.root)

    def agents(self) -> list[AgentOut]:
        return [AgentOut.of(agent) for agent in self._service.agents()]

    def add_agent(self, agent: AgentIn) -> AgentOut:
        return AgentOut.of(agent.register(self._service, actor=self._actor))

    def start_agent(self, name: str) -> AgentOut:
        return AgentOut.of(self._service.start_agent_manually(name, actor=self._actor))

    def set_agent_ports(self, name: str, ports: AgentPortsIn) -> AgentOut:
        return AgentOut.of(ports.apply(self._service, name, actor=self._actor))

    def upgrade_path(self, query: PathQuery) -> list[PathOut]:
        return [PathOut.of(advice) for advice in self._service.upgrade_path(query)]

    def packages(self) -> list[PackageOut]:
        return [PackageOut.of(package) for package in self._service.packages()]

    def upload(self, file: Path) -> PackageOut:
        return PackageOut.of(upload_package(self._service, self._app.packages, file, actor=self._actor))

    def plan(self, request: RolloutIn) -> PlanOut:
        spec, notes = request.to_spec(self._app.clock.now())
        return PlanOut.of(self._service.plan(spec), started=False, notes=notes)

    def start_rollout(self, request: RolloutIn) -> PlanOut:
        spec, notes = request.to_spec(self._app.clock.now())
        return PlanOut.of(self._service.start_rollout(spec, actor=self._actor), started=True, notes=notes)

    def control(self, command: RolloutCommand) -> RolloutStateOut:
        return RolloutStateOut.of(self._service.control(command, actor=self._actor))

    def resolve(self, rollout_id: UUID, agent: str, applied: bool) -> DoubtResolvedOut:
        return DoubtResolvedOut.of(self._service.resolve_doubt(rollout_id, agent, applied, actor=self._actor))

    def run(self, rollout_id: UUID, console: Console) -> RolloutStateOut:
        return RolloutStateOut.of(run_in_foreground(self._app, rollout_id, console))

    def settings(self) -> dict[str, str]:
        return self._service.settings()

    def set_setting(self, key: str, value: str) -> dict[str, str]:
        self._service.set_setting(key, value, actor=self._actor)
        return self._service.settings()

    def progress(self, rollout_id: UUID | None = None) -> Reading[list[RolloutProgressOut]]:
        caught_up(self._app, PROGRESS)
        reading = current_progress(self._app, rollout_id)
        return Reading([RolloutProgressOut.of(*view) for view in reading.value], reading.lag)

    def progress_at(self, rollout_id: UUID, *, at_time: datetime | None,
                    at_position: int | None) -> RolloutProgressOut:
        return RolloutProgressOut.of(*progress_as_of(self._app.store, rollout_id, at_time=at_time,
                                                     at_position=at_position, now=self._app.clock.now()))

    def package_history(self) -> Reading[list[PackageHistoryOut]]:
        caught_up(self._app, PACKAGE_HISTORY)
        reading = package_history(self._app)
        return Reading([PackageHistoryOut.of(row) for row in reading.value], reading.lag)

    def version_history(self, agent: str) -> Reading[list[VersionHistoryOut]]:
        caught_up(self._app, PACKAGE_HISTORY)
        reading = version_history(self._app, agent)
        return Reading([VersionHistoryOut.of(row) for row in reading.value], reading.lag)

    def verify_audit(self, anchor: str | None, reporter: Reporter | None = None) -> AuditVerifyOut:
        return AuditVerifyOut.of(check_audit(self._app.store, anchor, reporter))

    def export_audit(self, export_format: ExportFormat, selection: Selection, stream: TextIO,
                     reporter: Reporter | None = None) -> ExportSummary:
        return export_records(select_records(self._app.store, selection, reporter=reporter), stream, export_format)

    def projections(self) -> list[ProjectionStatusOut]:
        return [ProjectionStatusOut.of(status) for status in self._app.projections.status()]

    def engines(self) -> EnginesOut:
        return EnginesOut.of(lease_overview(self._app.engine, self._app.clock.now()))


@contextlib.contextmanager
def open_backend(ctx: typer.Context) -> Iterator[Backend]:
    """The backend the global options chose: the API server given by ``--server``, else the local database."""
    server = server_of(ctx)
    if server is not None:
        with HttpBackend(server) as remote:
            yield remote
        return
    with session(ctx) as app:
        yield LocalBackend(app, actor())
