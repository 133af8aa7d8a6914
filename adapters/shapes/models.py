"""The product's public data shapes: what the API answers and is sent, and what the CLI renders.

Both the API (request and response bodies, so its JSON and OpenAPI schema) and the command line (its local
path builds them straight from the service and the queries, its remote path parses the server's JSON into
them) use these models, so one command prints the same lines whichever way its data came. Kept apart from
the engine's events, converted at the edge (``of``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from dma_upgrade.adapters.audit.check import AuditReport
from dma_upgrade.adapters.sql.leases import LeaseOverview
from dma_upgrade.adapters.sql.projection_runner import ProjectionStatus
from dma_upgrade.engine.addresses import MAX_ADDRESS_LENGTH
from dma_upgrade.engine.agent_events import FailoverRole
from dma_upgrade.engine.inventory import AgentRecord
from dma_upgrade.engine.package_acceptance import ClusterAcceptance
from dma_upgrade.engine.packages import AgentFacts
from dma_upgrade.engine.records import PackageRecord
from dma_upgrade.engine.rollout import Rollout
from dma_upgrade.engine.rollout_events import FailoverPolicy, RolloutPlanned
from dma_upgrade.engine.service import AgentSelection, DoubtResolution, OptionOverrides, RolloutSpec, UpgradeService
from dma_upgrade.engine.version_choice import VersionChoice
from dma_upgrade.engine.versions import parse_version
from dma_upgrade.projections.tables import Row


def as_utc(moment: datetime | None) -> datetime | None:
    """``moment`` with UTC as its zone when it has none (a request's time without a zone means UTC)."""
    return moment.replace(tzinfo=UTC) if moment is not None and moment.tzinfo is None else moment


class Shape(BaseModel):
    """Every public data shape (a request or response body): unknown fields are refused."""

    model_config = ConfigDict(extra="forbid")


class FactsModel(Shape):
    """What an agent reports about itself, as prerequisite checks see it."""

    version: str = Field(max_length=100)
    os: str = Field(default="Windows Server 2022", max_length=200)
    components: list[str] = Field(default_factory=lambda: ["dotnet-8", "aspnetcore-8"], max_length=200)
    database: str = Field(default="opensearch", max_length=100)
    nats_running: bool = True
    ports_reachable: bool = True
    legacy_features: list[str] = Field(default_factory=list, max_length=200)
    snmp_agent_port: int = Field(default=161, ge=1, le=65535)
    windows_snmp_port: int = Field(default=161, ge=1, le=65535)

    def to_engine(self) -> AgentFacts:
        """These facts as the engine's ``AgentFacts`` (``InvalidVersion`` when the version is not one)."""
        parse_version(self.version)
        return AgentFacts(**{**self.model_dump(), "components": frozenset(self.components)})

    @classmethod
    def of(cls, facts: AgentFacts) -> FactsModel:
        """The engine's facts as a body."""
        return cls(**{**facts.model_dump(), "components": sorted(facts.components)})


class AgentIn(Shape):
    """An agent to register; its facts default to a healthy agent on ``version``."""

    name: str = Field(max_length=100)
    address: str = Field(max_length=MAX_ADDRESS_LENGTH)
    version: str = Field(max_length=100)
    cluster: str | None = Field(default=None, max_length=100)
    dataminer_id: int | None = Field(default=None, ge=1, le=2**31 - 1)
    failover_partner: str | None = Field(default=None, max_length=100)
    failover_role: FailoverRole | None = None
    facts: FactsModel | None = None

    def register(self, service: UpgradeService, *, actor: str) -> AgentRecord:
        """Register this agent (its facts default to a healthy agent on its version)."""
        facts = (self.facts or FactsModel(version=self.version)).to_engine()
        return service.register_agent(name=self.name, address=self.address, version=self.version,
                                      cluster=self.cluster, dataminer_id=self.dataminer_id,
                                      failover_partner=self.failover_partner, failover_role=self.failover_role,
                                      facts=facts, actor=actor)


class AgentPortsIn(Shape):
    """The UDP ports of an agent's SNMP services to set; a port left out keeps its value."""

    snmp_agent_port: int | None = Field(default=None, ge=1, le=65535, description="SLSNMPAgent's UDP port")
    windows_snmp_port: int | None = Field(default=None, ge=1, le=65535,
                                          description="the Windows SNMP service's UDP port")

    def apply(self, service: UpgradeService, name: str, *, actor: str) -> AgentRecord:
        """Set the ports (an ``AgentPortsChanged`` event when they change)."""
        return service.set_agent_ports(name, snmp_agent_port=self.snmp_agent_port,
                                       windows_snmp_port=self.windows_snmp_port, actor=actor)


class AgentOut(Shape):
    """A registered agent: where it is, its version and history, its failover role and facts."""

    name: str
    address: str
    cluster: str | None
    version: str
    dataminer_id: int | None
    failover_partner: str | None
    failover_role: FailoverRole | None
    needs_manual_start: bool
    version_history: list[str]
    facts: FactsModel | None

    @classmethod
    def of(cls, record: AgentRecord) -> AgentOut:
        """The inventory's record of an agent as a body."""
        return cls(name=record.name, address=record.address, cluster=record.cluster, version=record.version,
                   dataminer_id=record.dataminer_id, failover_partner=record.failover_partner,
                   failover_role=record.failover_role, needs_manual_start=record.stopped_by_upgrade is not None,
                   version_history=list(record.version_history),
                   facts=FactsModel.of(record.facts) if record.facts is not None else None)


class ClusterAcceptanceOut(Shape):
    """Whether one system (a cluster, or an agent in no cluster) accepted a package on upload, and why not."""

    cluster: str | None
    agents: list[str]
    accepted: bool
    refusals: list[str] = Field(description="the failed prerequisite checks that refuse it, one per agent and check")

    @property
    def label(self) -> str:
        """``cluster north``, or ``agent dma-9`` for an agent in no cluster."""
        return f"cluster {self.cluster}" if self.cluster is not None else f"agent {self.agents[0]}"

    @classmethod
    def of(cls, judged: ClusterAcceptance) -> ClusterAcceptanceOut:
        """The engine's judgement of one system as a body."""
        return cls(cluster=judged.cluster, agents=list(judged.agents), accepted=judged.accepted,
                   refusals=list(judged.refusals))


class PackageOut(Shape):
    """An uploaded package: its file, what it installs, who uploaded it and whether a rollout uses it."""

    sha256: str
    file_name: str
    size: int
    version: str
    build: int
    cu: int | None
    full_version: str = Field(description="the version it installs, CU and build included")
    kind: str
    uploaded_at: datetime
    uploaded_by: str
    status: str
    used_by: str | None
    clusters: list[ClusterAcceptanceOut] = Field(default_factory=list, description=(
        "which systems accepted it on upload (prerequisites judged per cluster); empty when none could be judged"))

    @classmethod
    def of(cls, record: PackageRecord) -> PackageOut:
        """The engine's package record as a body."""
        manifest = record.manifest
        return cls(sha256=record.sha256, file_name=record.file_name, size=record.size, version=manifest.version,
                   build=manifest.build, cu=manifest.cu, full_version=str(manifest.dataminer_version),
                   kind=manifest.kind.value, uploaded_at=record.uploaded_at,
                   uploaded_by=record.uploaded_by, status=record.status,
                   used_by=str(record.used_by) if record.used_by else None,
                   clusters=[ClusterAcceptanceOut.of(judged) for judged in record.clusters])


class PackageContinuedOut(Shape):
    """An operator continued a rollout with its package."""

    by: str
    at: datetime


class PackageRolloutOut(Shape):
    """A rollout that used a package, and how it ended: when and by whom the package was first
    used (an agent began installing it: it is then completed), and who continued it."""

    rollout_id: str
    upload_only: bool
    outcome: str
    used_by: str | None = None
    used_at: datetime | None = None
    used_agent: str | None = None
    continued: list[PackageContinuedOut] = Field(default_factory=list)


class PackageHistoryOut(Shape):
    """One package ever uploaded, from the package history projection."""

    sha256: str
    file_name: str
    version: str
    cu: int | None
    kind: str
    size: int
    uploaded_by: str
    uploaded_at: datetime
    status: str
    rollouts: list[PackageRolloutOut]
    clusters: list[ClusterAcceptanceOut] = Field(default_factory=list, description=(
        "which systems accepted it on upload (prerequisites judged per cluster); empty when none could be judged"))

    @classmethod
    def of(cls, row: Row) -> PackageHistoryOut:
        """A row of the package history projection as a body."""
        clusters = [ClusterAcceptanceOut.of(ClusterAcceptance.model_validate(judged))
                    for judged in row.get("clusters") or []]
        return cls(**{**row, "rollouts": row["rollouts"] or [], "clusters": clusters})


class VersionHistoryOut(Shape):
    """One line of an agent's VersionHistory.txt."""

    recorded_at: datetime
    version: str

    @classmethod
    def of(cls, row: Row) -> VersionHistoryOut:
        """A row of the version history projection as a body."""
        return cls(recorded_at=row["recorded_at"], version=row["version"])


class RolloutIn(Shape):
    """What an operator asks of a rollout: a package, agents, options (None keeps the system default)."""

    package: str = Field(max_length=300, description="SHA-256 (or 8+ leading digits) or file name")
    cluster: str | None = Field(default=None, max_length=100, description="upgrade every agent of this cluster")
    clusters: list[Annotated[str, Field(max_length=100)]] = Field(
        default_factory=list, max_length=1000, description="upgrade every agent of each of these clusters")
    agents: list[str] = Field(default_factory=list, max_length=10_000)
    addresses: list[str] = Field(default_factory=list, max_length=10_000)
    extract_all: bool | None = None
    delayed_start: bool | None = None
    auto_start: bool | None = None
    stop_snmp: bool | None = None
    reboot: bool | None = None
    failover_policy: FailoverPolicy = FailoverPolicy.DEFAULT
    upload_only: bool = False
    max_concurrent: str | None = Field(default=None, max_length=20, description="N or P%")
    max_errors: str | None = Field(default=None, max_length=20, description="N or P%")
    start_at: datetime | None = Field(default=None, description="start then (UTC when no zone); past = now")
    allow_partial_pair: bool = Field(default=False, description=(
        "under a backup-first policy, upgrade a member of a failover pair without its partner (or of an "
        "incomplete pair), on its own and without a switch-over; refused otherwise"))
    reinstall: bool = Field(default=False, description=(
        "let a Full package install the version an agent runs already (refused otherwise); recorded on the plan"))
    allow_downgrade: bool = Field(default=False, description=(
        "let a Full package install a version older than an agent runs (refused otherwise); recorded on the plan"))
    skip_path_check: bool = Field(default=False, description=(
        "plan a jump that breaks the documented upgrade path (refused otherwise, naming the chain to follow); "
        "recorded on the plan"))

    def to_spec(self, now: datetime) -> tuple[RolloutSpec, list[str]]:
        """The engine's rollout spec, and notes on what was adjusted (a start time in the past means now)."""
        notes = []
        start_at = as_utc(self.start_at)
        if start_at is not None and start_at <= now:
            notes.append(f"start_at {start_at.isoformat()} is in the past: the rollout starts now")
            start_at = None
        spec = RolloutSpec(package=self.package, start_at=start_at,
                           selection=AgentSelection(cluster=self.cluster, clusters=tuple(self.clusters),
                                                    names=tuple(self.agents), addresses=tuple(self.addresses)),
                           overrides=OptionOverrides(extract_all=self.extract_all, delayed_start=self.delayed_start,
                                                     auto_start=self.auto_start, stop_snmp=self.stop_snmp,
                                                     reboot=self.reboot),
                           failover_policy=self.failover_policy, upload_only=self.upload_only,
                           max_concurrent=self.max_concurrent, max_errors=self.max_errors,
                           allow_partial_pair=self.allow_partial_pair,
                           version_choice=VersionChoice(reinstall=self.reinstall, allow_downgrade=self.allow_downgrade),
                           skip_path_check=self.skip_path_check)
        return spec, notes


class PlannedAgentOut(Shape):
    """One agent in a plan: its version now, the steps it will go through and whom it waits for."""

    name: str
    cluster: str | None
    current_version: str
    failover_role: FailoverRole | None
    steps: list[str]
    after: list[str]
    notes: list[str] = Field(default_factory=list, description="what its failover pair goes through")


class PlanOut(Shape):
    """A rollout's plan: who, in which order, visiting which states, and the warnings."""

    rollout_id: str
    started: bool
    package_sha256: str
    package_version: str
    failover_policy: str
    max_concurrent: int
    max_errors: int
    options: dict[str, bool]
    upload_only: bool
    start_at: datetime | None
    agents: list[PlannedAgentOut]
    warnings: list[str]
    notes: list[str] = Field(default_factory=list, description=(
        "what the request had adjusted (a start time in the past), then what the failover pairs go through"))
    allow_partial_pair: bool = False
    reinstall: bool = False
    allow_downgrade: bool = False
    skip_path_check: bool = False

    @classmethod
    def of(cls, planned: RolloutPlanned, *, started: bool, notes: list[str]) -> PlanOut:
        """The ``RolloutPlanned`` event as a body, saying whether it started and what was adjusted (``notes``,
        followed by the plan's own notes)."""
        return cls(rollout_id=str(planned.rollout_id), started=started, package_sha256=planned.package_sha256,
                   package_version=planned.package_version, failover_policy=planned.failover_policy.value,
                   max_concurrent=planned.max_concurrent, max_errors=planned.max_errors,
                   options=planned.options.model_dump(), upload_only=planned.upload_only,
                   start_at=planned.start_at, warnings=list(planned.warnings), notes=[*notes, *planned.notes],
                   allow_partial_pair=planned.allow_partial_pair, reinstall=planned.reinstall,
                   allow_downgrade=planned.allow_downgrade, skip_path_check=planned.skip_path_check,
                   agents=[PlannedAgentOut(name=a.name, cluster=a.cluster, current_version=a.current_version,
                                           failover_role=a.failover_role, steps=[s.value for s in a.plan.steps],
                                           after=list(a.after), notes=list(a.notes)) for a in planned.agents])


class RolloutStateOut(Shape):
    """A rollout's state after a command."""

    rollout_id: str
    state: str
    end_reason: str | None

    @classmethod
    def of(cls, rollout: Rollout) -> RolloutStateOut:
        """The rollout aggregate's state as a body."""
        return cls(rollout_id=str(rollout.plan.rollout_id), state=rollout.state.value,
                   end_reason=rollout.end_reason or None)


class AgentProgressOut(Shape):
    """One agent's upgrade in the Progress tab."""

    upgrade_id: str
    rollout_id: str
    agent: str
    plan_order: int
    failover_role: str | None
    state: str
    step: str | None
    phase: str | None
    steps_done: int
    steps_planned: int
    attempts: int
    retries: int
    started_at: datetime | None
    ended_at: datetime | None
    state_since: datetime | None
    durations: dict[str, float] | None
    last_error: str | None
    manual_start_needed: bool
    version_from: str | None
    version_after: str | None
    waiting_until: datetime | None
    last_position: int
    resumes: int
    step_attempt: int | None = Field(default=None, description="the attempt number of the step in flight")
    in_doubt: bool = Field(default=False, description=(
        "the outcome of the step in flight is unknown (last_error says why): the engine asks the agent before "
        "anything is sent again; an operator may decide it with POST /api/v1/rollouts/{id}/resolve"))
    awaiting_manual_start: str | None = Field(default=None, description=(
        "the agent an operator must start (`agents start`) before this upgrade switches over (Auto Start off)"))
    notes: list[str] | None = Field(default=None, description="what its failover pair goes through (the plan's notes)")


class RolloutProgressOut(Shape):
    """One rollout in the Progress tab: totals, then a row per agent."""

    rollout_id: str
    package_version: str
    failover_policy: str
    state: str
    upload_only: bool
    agents_total: int
    waiting: int
    in_flight: int
    completed: int
    failed: int
    cancelled: int
    warnings: list[str] | None
    planned_at: datetime
    started_at: datetime | None = Field(description="when the engine recorded the start (null until it starts)")
    ended_at: datetime | None
    end_reason: str | None
    planned_by: str
    last_position: int
    notes: list[str] | None = Field(default=None, description="what the failover pairs go through (the plan's notes)")
    start_at: datetime | None = Field(default=None, description=(
        "the scheduled start (`upgrade start --at`); null when the rollout started as soon as it was planned"))
    start_lateness_seconds: float | None = Field(default=None, description=(
        "how long after start_at the engine started it (started_at - start_at; 0 when on time); null when it "
        "was not scheduled or has not started"))
    agents: list[AgentProgressOut]

    @classmethod
    def of(cls, rollout: Row, agents: list[Row]) -> RolloutProgressOut:
        """A progress projection row of a rollout and those of its agents as a body."""
        ordered = sorted(agents, key=lambda a: a["plan_order"])
        fields = {name: value for name, value in rollout.items() if name != "upgrade_ids"}  # the agents say it
        return cls(**fields, agents=[AgentProgressOut(**a) for a in ordered])


class ResolveIn(Shape):
    """An operator's decision on the step in doubt of one agent's upgrade in a rollout."""

    agent: str = Field(max_length=100)
    applied: bool = Field(description=(
        "true: the step took effect (it is recorded done, after an install the agent runs the rollout's version); "
        "false: it did not (the engine sends it again under the same idempotency key)"))


class DoubtResolvedOut(Shape):
    """What was recorded for a step in doubt, and where the agent's upgrade now stands."""

    rollout_id: str
    agent: str
    step: str
    attempt: int
    applied: bool
    version_after: str | None
    state: str

    @classmethod
    def of(cls, resolution: DoubtResolution) -> DoubtResolvedOut:
        """The service's resolution as a body."""
        return cls(rollout_id=str(resolution.rollout_id), agent=resolution.agent, step=resolution.step.value,
                   attempt=resolution.attempt, applied=resolution.applied, version_after=resolution.version_after,
                   state=resolution.state)


class AuditVerifyOut(Shape):
    """The verdict on the hash chain (and on an anchor, when one was given)."""

    ok: bool
    verified: int
    head: str | None = Field(description="HASH@POSITION of the last verified event")
    broken_at: int | None
    problem: str | None

    @classmethod
    def of(cls, report: AuditReport) -> AuditVerifyOut:
        """The audit check's report as a body."""
        chain = report.chain
        return cls(ok=report.ok, verified=chain.verified, broken_at=chain.broken_at,
                   head=f"{chain.last_hash}@{chain.last_position}" if chain.verified else None,
                   problem=report.problem or None)


class EngineOut(Shape):
    """One engine process and what it drives now (its leases)."""

    engine_instance: str
    host: str
    pid: str
    rollouts: list[str]
    upgrades: int
    roles: list[str]
    lease_expires_at: datetime


class EnginesOut(Shape):
    """The engine processes sharing the database, and handed-out upgrades no live engine holds yet."""

    engines: list[EngineOut]
    upgrades_waiting: int

    @classmethod
    def of(cls, overview: LeaseOverview) -> EnginesOut:
        """The leases table's overview as a body."""
        return cls(engines=[EngineOut(engine_instance=e.owner, host=e.host, pid=e.pid, rollouts=list(e.rollouts),
                                      upgrades=e.upgrades, roles=list(e.roles), lease_expires_at=e.expires_at)
                            for e in overview.engines], upgrades_waiting=overview.upgrades_waiting)


class ProjectionStatusOut(Shape):
    """Where one projection stands: its checkpoint, the head, its lag and any stop."""

    name: str
    position: int
    head: int
    lag_events: int
    lag_seconds: float
    error: str | None
    error_position: int | None

    @classmethod
    def of(cls, status: ProjectionStatus) -> ProjectionStatusOut:
        """The projection runner's status as a body."""
        return cls(name=status.name, position=status.position, head=status.head, lag_events=status.lag_events,
                   lag_seconds=status.lag_seconds, error=status.error, error_position=status.error_position)


class RecoveryOut(Shape):
    """``recover --dry-run``: what a starting engine would do with one unfinished rollout or agent upgrade."""

    rollout_id: str
    rollout_state: str
    agent: str | None = None
    """The agent upgrade resumed; None for the rollout itself (waiting for its start, or to start its agents)."""
    would: str
    """What the engine would do, in words."""
    step_in_doubt: str | None = None
    """The step in flight whose outcome is unknown (resolve with ``upgrade resolve``), if any."""
    awaiting_manual_start: str | None = None
    """The agent an operator must start before the switch-over (Auto Start off), if any."""
