"""The application service: every command loads what it needs, decides, and appends — or changes nothing."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import assert_never
from uuid import UUID

from dma_upgrade.engine import commands
from dma_upgrade.engine.addresses import AddressPolicy, AgentEndpoint, parse_address
from dma_upgrade.engine.agent_events import (
    AGENT_STREAMS,
    AgentFactsReported,
    AgentRegistered,
    AgentStartedManually,
    FailoverRole,
    agent_stream_id,
)
from dma_upgrade.engine.agent_upgrade import AgentUpgrade, upgrade_stream_id
from dma_upgrade.engine.decisions import cancellations, continued_agents, failed_agents, version_change
from dma_upgrade.engine.errors import ConcurrencyConflict, Conflict, InvalidInput, InvalidTransition, NotFound, shown
from dma_upgrade.engine.events import Event, EventMetadata, NewEvent, RecordedEvent, events_by_stream
from dma_upgrade.engine.inventory import AgentRecord, cluster_label, fold_agent, ports_change, registered_agents
from dma_upgrade.engine.package_acceptance import judge_clusters, refusal_by_every_system
from dma_upgrade.engine.packages import AgentFacts, PackageManifest, PackageRejected
from dma_upgrade.engine.path_advice import PathAdvice, PathQuery, advise
from dma_upgrade.engine.planning import RolloutRequest, plan_rollout
from dma_upgrade.engine.ports import (
    AgentAddress,
    AgentGateway,
    AppendResult,
    Clock,
    EventStore,
    IdFactory,
    PackageRef,
    StepOutcome,
)
from dma_upgrade.engine.records import PackageRecord, active_claims, fold_packages, fold_settings, package_use
from dma_upgrade.engine.rollout import Rollout, RolloutState
from dma_upgrade.engine.rollout_events import (
    CLAIMS_STREAM,
    PACKAGE_STREAMS,
    ROLLOUT_STREAMS,
    SETTINGS_STREAM,
    FailoverPolicy,
    PackageUploaded,
    RolloutClaimed,
    RolloutPlanned,
    RolloutReleased,
    SettingChanged,
    StepPolicy,
    package_stream_id,
    rollout_stream_id,
)
from dma_upgrade.engine.upgrade_events import Step, UpgradeOptions
from dma_upgrade.engine.upgrade_machine import UpgradeState
from dma_upgrade.engine.version_choice import VersionChoice
from dma_upgrade.engine.versions import parse_version, version_identity

_FULL_SHA256 = re.compile(r"[0-9a-f]{64}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
MAX_CLUSTER_LENGTH = 100
_BOOL = {"on": True, "true": True, "yes": True, "off": False, "false": False, "no": False}
OPTION_SETTINGS = ("extract-all", "delayed-start", "auto-start", "stop-snmp", "reboot")
SETTING_DEFAULTS = {"failover-default-policy": FailoverPolicy.SIMULTANEOUS.value, "extract-all": "on",
                    "delayed-start": "on", "auto-start": "on", "stop-snmp": "on", "reboot": "off",
                    "delayed-start-seconds": "60"}
"""The documented defaults; System Center > Settings > Upgrade changes them through ``set_setting``."""


@dataclass(frozen=True)
class AgentSelection:
    """Which agents a rollout takes: whole clusters (``cluster`` and/or ``clusters``), or agents by name and/or by
    IP address."""

    cluster: str | None = None
    names: tuple[str, ...] = ()
    addresses: tuple[str, ...] = ()
    clusters: tuple[str, ...] = ()

    @property
    def all_clusters(self) -> tuple[str, ...]:
        """Every cluster named, each once, in the order given."""
        return tuple(dict.fromkeys((*(() if self.cluster is None else (self.cluster,)), *self.clusters)))


@dataclass(frozen=True)
class OptionOverrides:
    """Per-rollout options; None keeps the system default."""

    extract_all: bool | None = None
    delayed_start: bool | None = None
    auto_start: bool | None = None
    stop_snmp: bool | None = None
    reboot: bool | None = None


@dataclass(frozen=True)
class DoubtResolution:
    """An operator's decision on a step in doubt, as recorded, and the state of the upgrade after it."""

    rollout_id: UUID
    agent: str
    upgrade_id: UUID
    step: Step
    attempt: int
    applied: bool
    version_after: str | None
    state: str


@dataclass(frozen=True)
class RolloutSpec:
    """What an operator asks of a rollout, before planning."""

    package: str
    selection: AgentSelection
    overrides: OptionOverrides = OptionOverrides()
    failover_policy: FailoverPolicy = FailoverPolicy.DEFAULT
    """Parsed at the edge (``FailoverPolicy.parse``); ``DEFAULT`` takes the system setting."""
    upload_only: bool = False
    max_concurrent: str | None = None
    max_errors: str | None = None
    step_policy: StepPolicy = field(default_factory=StepPolicy)
    start_at: datetime | None = None
    allow_partial_pair: bool = False
    """Under a switch-over policy, upgrade a member of a failover pair without its partner (no switch-over)."""
    version_choice: VersionChoice = field(default_factory=VersionChoice)
    """Whether the package may reinstall the version an agent runs, or install an older one."""
    skip_path_check: bool = False
    """Plan a jump that breaks the documented upgrade path (``engine.upgrade_paths``) instead of refusing it."""


class UpgradeService:
    """Commands and queries of dma-upgrade on the event store; every change is an appended event.

    ``gateway`` is how the commands that ask an agent (adding one by IP address, a manual start) reach it; without
    one they refuse. ``address_policy`` says which IP addresses agents may be registered at (default: any but
    link-local). Both are fixed at construction (``adapters/bootstrap.py`` wires them)."""

    def __init__(self, store: EventStore, clock: Clock, ids: IdFactory, gateway: AgentGateway | None = None,
                 address_policy: AddressPolicy = AddressPolicy()) -> None:
        self.store = store
        self.clock = clock
        self.ids = ids
        self._agent_gateway = gateway
        self.address_policy = address_policy
        self._packages_in_use: set[tuple[str, UUID]] = set()
        """(package, rollout) pairs known marked used: a package's use never changes once recorded."""

    # -- appending ----------------------------------------------------------------------------

    def append(self, stream_id: str, expected_version: int, events: Sequence[Event], *, actor: str,
               correlation_id: UUID | None = None) -> AppendResult:
        """Append events with new ids and the actor's metadata."""
        metadata = EventMetadata(actor=actor, correlation_id=correlation_id)
        return self.store.append(stream_id, expected_version,
                                 [NewEvent(event_id=self.ids.new_id(), event=e, metadata=metadata)
                                  for e in events])

    # -- agents -------------------------------------------------------------------------------

    def agents(self) -> list[AgentRecord]:
        """Every registered agent, by name."""
        return registered_agents(self.store.read_category(AGENT_STREAMS))

    def agent(self, name: str) -> AgentRecord:
        record = fold_agent(e.event for e in self.store.read_stream(agent_stream_id(name)))
        if record is None:
            raise NotFound(f"unknown agent {name!r}")
        return record

    def register_agent(self, *, name: str, address: str, version: str, cluster: str | None = None,
                       dataminer_id: int | None = None, failover_partner: str | None = None,
                       failover_role: FailoverRole | None = None, facts: AgentFacts | None = None,
                       actor: str) -> AgentRecord:
        """Add an agent to the inventory (names and addresses are unique); its address is stored canonical."""
        endpoint = self._endpoint(address)
        existing = self.agents()
        _check_new_agent(name, endpoint, version, cluster, existing)
        if facts is not None:
            _check_facts(facts)
        if (failover_partner is None) != (failover_role is None):
            raise InvalidInput("a failover pair needs both --failover-partner and --failover-role")
        if failover_partner is not None and failover_role is not None:
            _check_pairing(name, cluster, failover_partner, failover_role, existing)
        events: list[Event] = [AgentRegistered(name=name, address=endpoint.netloc, cluster=cluster, version=version,
                                               dataminer_id=dataminer_id, failover_partner=failover_partner,
                                               failover_role=failover_role)]
        if facts is not None:
            events.append(AgentFactsReported(facts=facts))
        try:
            self.append(agent_stream_id(name), 0, events, actor=actor)
        except ConcurrencyConflict:
            raise Conflict(f"agent {name!r} is registered already") from None
        return self.agent(name)

    def add_agent_by_ip(self, address: str, *, actor: str) -> AgentRecord:
        """Register the agent at ``address``, asking it who it is."""
        endpoint = self._endpoint(address)
        known = _registered_at(endpoint, self.agents())
        if known is not None:
            return known
        identity = self._gateway().identify(endpoint.netloc)
        return self.register_agent(name=identity.name, address=endpoint.netloc, version=identity.version,
                                   cluster=identity.cluster, facts=identity.facts, actor=actor)

    def report_facts(self, name: str, facts: AgentFacts, *, actor: str) -> AgentRecord:
        """Record what an agent now reports about itself; its version changes only through upgrades."""
        record = self.agent(name)
        _check_facts(facts)
        if version_identity(facts.version) != version_identity(record.version):  # notation aside
            raise InvalidInput(f"agent {name} runs {record.version}; facts for {facts.version} do not apply "
                               f"(versions change only through upgrades)")
        self.append(agent_stream_id(name), record.stream_version, [AgentFactsReported(facts=facts)], actor=actor)
        return self.agent(name)

    def set_agent_ports(self, name: str, *, snmp_agent_port: int | None = None,
                        windows_snmp_port: int | None = None, actor: str) -> AgentRecord:
        """Set the UDP ports of an agent's SLSNMPAgent and Windows SNMP service (None: keep that one); a change
        is an ``AgentPortsChanged`` event, setting them to what they are appends nothing."""
        record = self.agent(name)
        events = ports_change(record, snmp_agent_port, windows_snmp_port)
        if events:
            self.append(agent_stream_id(name), record.stream_version, events, actor=actor)
        return self.agent(name)

    def upgrade_path(self, query: PathQuery) -> list[PathAdvice]:
        """The chain of versions to install (per distinct current version), with the packages covering each hop."""
        return advise(query, self.agents(), self.packages())

    def start_agent_manually(self, name: str, *, actor: str) -> AgentRecord:
        """Start the DataMiner of an agent an upgrade left stopped (Auto Start off)."""
        record = self.agent(name)
        if record.stopped_by_upgrade is None:
            raise Conflict(f"agent {name} was not left stopped by an upgrade")
        self._gateway().perform(AgentAddress(record.name, record.address), Step.START,
                                f"{record.stopped_by_upgrade}:manual-start", PackageRef("", record.version))
        self.append(agent_stream_id(name), record.stream_version,
                    [AgentStartedManually(upgrade_id=record.stopped_by_upgrade)], actor=actor)
        return self.agent(name)

    # -- settings -----------------------------------------------------------------------------

    def settings(self) -> dict[str, str]:
        """Every setting: the documented defaults overlaid with what was set."""
        return {**SETTING_DEFAULTS, **fold_settings(self.store.read_stream(SETTINGS_STREAM))}

    def set_setting(self, key: str, value: str, *, actor: str) -> None:
        """Change a system setting (an event, so replay never depends on today's settings)."""
        if key not in SETTING_DEFAULTS:
            raise InvalidInput(f"unknown setting {key!r}; known: {', '.join(SETTING_DEFAULTS)}")
        value = value.strip().lower()
        if key == "failover-default-policy":
            FailoverPolicy.parse(value, allow_default=False)
        elif key == "delayed-start-seconds":
            if not value.isdigit() or int(value) > 3600:
                raise InvalidInput(f"delayed-start-seconds must be 0..3600, got {value!r}")
        elif value not in _BOOL:
            raise InvalidInput(f"{key} must be on or off, got {value!r}")
        stream = self.store.read_stream(SETTINGS_STREAM)
        self.append(SETTINGS_STREAM, len(stream), [SettingChanged(key=key, value=value)], actor=actor)

    def options(self, overrides: OptionOverrides, settings: dict[str, str] | None = None) -> UpgradeOptions:
        """The upgrade options: each override, else the system default (from ``settings`` if given)."""
        settings = settings or self.settings()
        chosen = {name: getattr(overrides, name.replace("-", "_")) for name in OPTION_SETTINGS}
        return UpgradeOptions(**{name.replace("-", "_"): _BOOL[settings[name]] if value is None else value
                                 for name, value in chosen.items()})

    # -- packages -----------------------------------------------------------------------------

    def packages(self) -> list[PackageRecord]:
        """Every uploaded package, oldest first; used ones stay listed as completed."""
        return sorted(fold_packages(self.store.read_category(PACKAGE_STREAMS)).values(),
                      key=lambda p: p.uploaded_at)

    def package(self, reference: str) -> PackageRecord:
        """A package by SHA-256 (or a unique prefix of at least 8 digits) or by file name."""
        if _FULL_SHA256.fullmatch(reference):  # one stream to read, not every package
            record = fold_packages(self.store.read_stream(package_stream_id(reference))).get(reference)
            if record is None:
                raise NotFound(f"unknown package {reference!r}")
            return record
        matches = [p for p in self.packages()
                   if p.file_name == reference or (len(reference) >= 8 and p.sha256.startswith(reference))]
        if len(matches) != 1:
            raise NotFound(f"unknown package {reference!r}" if not matches
                           else f"package {reference!r} is ambiguous")
        return matches[0]

    def record_upload(self, *, sha256: str, file_name: str, size: int, manifest: PackageManifest,
                      actor: str, checked_agents: Sequence[AgentRecord] | None = None) -> PackageRecord:
        """Store a validated package with the systems that accept it and why the others do not (prerequisites
        judged per cluster, ``engine.package_acceptance``); refused only when no system accepts it (a package
        uploaded before any agent reported facts is accepted)."""
        agents = self.agents() if checked_agents is None else checked_agents
        clusters = judge_clusters(manifest, agents)
        refusal = refusal_by_every_system(clusters)
        if refusal is not None:
            raise PackageRejected(file_name, refusal)
        try:
            self.append(package_stream_id(sha256), 0,
                        [PackageUploaded(sha256=sha256, file_name=file_name, size=size, manifest=manifest,
                                         clusters=clusters)],
                        actor=actor)
        except ConcurrencyConflict:
            existing = self.package(sha256)
            raise Conflict(f"package {file_name} was uploaded already as {existing.sha256[:12]} "
                           f"({existing.status})") from None
        return self.package(sha256)

    # -- rollouts -----------------------------------------------------------------------------

    def _select(self, selection: AgentSelection, inventory: list[AgentRecord]) -> list[AgentRecord]:
        """The agents a selection names; an agent given by an unknown IP is asked who it is (not registered)."""
        clusters = selection.all_clusters
        if clusters:
            if selection.names or selection.addresses:
                raise InvalidInput("choose either a whole cluster or individual agents, not both")
            known = {a.cluster for a in inventory}
            unknown = [cluster for cluster in clusters if cluster not in known]
            if unknown:
                raise NotFound(f"unknown cluster{'s' if len(unknown) > 1 else ''} "
                               + ", ".join(repr(cluster) for cluster in unknown))
            return [a for cluster in clusters for a in inventory if a.cluster == cluster]
        by_name = {a.name: a for a in inventory}
        chosen = []
        for name in selection.names:
            if name not in by_name:
                raise NotFound(f"unknown agent {name!r}")
            chosen.append(by_name[name])
        chosen.extend(self._identified(address, inventory) for address in selection.addresses)
        if not chosen:
            raise InvalidInput("choose agents: a cluster, or agents by name or IP address")
        unique = {a.name: a for a in chosen}
        return list(unique.values())

    def _identified(self, address: str, inventory: list[AgentRecord]) -> AgentRecord:
        """The agent registered at ``address``, or the one answering there, checked as a new registration."""
        endpoint = self._endpoint(address)
        known = _registered_at(endpoint, inventory)
        if known is not None:
            return known
        identity = self._gateway().identify(endpoint.netloc)
        _check_new_agent(identity.name, endpoint, identity.version, identity.cluster, inventory)
        _check_facts(identity.facts)
        return AgentRecord(name=identity.name, address=endpoint.netloc, cluster=identity.cluster,
                           version=identity.version, facts=identity.facts, version_history=[identity.version])

    def plan(self, spec: RolloutSpec) -> RolloutPlanned:
        """The plan a rollout would follow, checked against everything known now; appends nothing."""
        return self._plan(spec)[0]

    def _plan(self, spec: RolloutSpec) -> tuple[RolloutPlanned, list[AgentRecord]]:
        """The plan, and the agents it takes that are not registered yet (given by IP address)."""
        record = self.package(spec.package)
        if record.used_by is not None and not spec.upload_only:
            raise Conflict(f"package {record.file_name} was used by rollout {record.used_by} and is completed: "
                           f"it cannot execute another upgrade")
        settings = self.settings()
        policy = spec.failover_policy
        if policy is FailoverPolicy.DEFAULT:
            policy = FailoverPolicy(settings["failover-default-policy"])
        inventory = self.agents()
        agents = self._select(spec.selection, inventory)
        known = {a.name for a in inventory}
        newcomers = [a for a in agents if a.name not in known]
        inventory += newcomers
        self._refuse_busy(self.store.read_stream(CLAIMS_STREAM), [(a.name, a.cluster) for a in agents])
        request = RolloutRequest(package_sha256=record.sha256, manifest=record.manifest, agents=agents,
                                 inventory=inventory, options=self.options(spec.overrides, settings),
                                 failover_policy=policy, upload_only=spec.upload_only,
                                 max_concurrent=spec.max_concurrent, max_errors=spec.max_errors,
                                 delayed_start_seconds=int(settings["delayed-start-seconds"]),
                                 step_policy=spec.step_policy, start_at=spec.start_at,
                                 allow_partial_pair=spec.allow_partial_pair, version_choice=spec.version_choice,
                                 skip_path_check=spec.skip_path_check)
        return plan_rollout(request, self.ids.new_id(), self.ids.new_id), newcomers

    def start_rollout(self, spec: RolloutSpec, *, actor: str) -> RolloutPlanned:
        """Plan and record a rollout and claim its clusters — or change nothing. Its package is marked used once
        an agent begins installing it (``mark_package_used``).

        Agents given by an unknown IP address are registered once the plan has passed every check."""
        planned, newcomers = self._plan(spec)
        for agent in newcomers:
            self.register_agent(name=agent.name, address=agent.address, version=agent.version, cluster=agent.cluster,
                                facts=agent.facts, actor=actor)
        rollout_id = planned.rollout_id
        self.append(rollout_stream_id(rollout_id), 0, [planned], actor=actor, correlation_id=rollout_id)
        try:
            self._claim(planned, actor=actor)
        except Conflict as refusal:
            self._abandon(rollout_id, str(refusal), actor=actor)
            raise
        return planned

    @staticmethod
    def _refuse_busy(claims_stream: Iterable[RecordedEvent], members: Iterable[tuple[str, str | None]]) -> None:
        """Refuse agents (name, cluster) that an active claim on the claims stream already holds."""
        claims = active_claims(claims_stream).values()
        for name, cluster in members:
            for claim in claims:
                if cluster is not None and cluster in claim.clusters:
                    raise Conflict(f"cluster {cluster} already has an active rollout ({claim.rollout_id})")
                if name in claim.agents:
                    raise Conflict(f"agent {name} is already in active rollout {claim.rollout_id}")

    def _claim(self, planned: RolloutPlanned, *, actor: str) -> None:
        """Claim the rollout's clusters and agents, or ``Conflict`` when another active rollout holds one."""
        claim = RolloutClaimed(rollout_id=planned.rollout_id,
                               clusters=tuple(sorted({a.cluster for a in planned.agents if a.cluster})),
                               agents=tuple(a.name for a in planned.agents))
        while True:
            stream = self.store.read_stream(CLAIMS_STREAM)
            self._refuse_busy(stream, [(a.name, a.cluster) for a in planned.agents])
            try:
                self.append(CLAIMS_STREAM, len(stream), [claim], actor=actor, correlation_id=planned.rollout_id)
                return
            except ConcurrencyConflict:
                continue

    def mark_package_used(self, planned: RolloutPlanned, agent: str, *, actor: str) -> None:
        """Mark the rollout's package used (completed) as ``agent`` begins installing it, once per rollout;
        ``Conflict`` when another rollout used it. A use once recorded never changes, so the package is read only
        until this service has seen it used by the rollout."""
        use = (planned.package_sha256, planned.rollout_id)
        if use in self._packages_in_use:
            return
        while True:
            record = self.package(planned.package_sha256)
            events = package_use(record, planned.rollout_id, agent)
            if events:
                try:
                    self.append(package_stream_id(record.sha256), record.stream_version, events, actor=actor,
                                correlation_id=planned.rollout_id)
                except ConcurrencyConflict:
                    continue
            self._packages_in_use.add(use)
            return

    def _abandon(self, rollout_id: UUID, reason: str, *, actor: str) -> None:
        rollout = self.rollout(rollout_id)
        self.append(rollout_stream_id(rollout_id), rollout.version, rollout.cancel(f"refused: {reason}"),
                    actor=actor, correlation_id=rollout_id)
        self.release(rollout_id, actor=actor)

    def release(self, rollout_id: UUID, *, actor: str) -> None:
        """Give back a rollout's clusters (idempotent)."""
        while True:
            stream = self.store.read_stream(CLAIMS_STREAM)
            if rollout_id not in active_claims(stream):
                return
            try:
                self.append(CLAIMS_STREAM, len(stream), [RolloutReleased(rollout_id=rollout_id)], actor=actor,
                            correlation_id=rollout_id)
                return
            except ConcurrencyConflict:
                continue

    def rollout(self, rollout_id: UUID) -> Rollout:
        rollout = Rollout.fold(e.event for e in self.store.read_stream(rollout_stream_id(rollout_id)))
        if rollout.planned is None:
            raise NotFound(f"unknown rollout {rollout_id}")
        return rollout

    def rollouts(self) -> list[Rollout]:
        """Every rollout, oldest first."""
        streams = events_by_stream(self.store.read_category(ROLLOUT_STREAMS))
        return [Rollout.fold(events) for stream_id, events in streams.items() if stream_id != CLAIMS_STREAM]

    def control(self, command: commands.RolloutCommand, *, actor: str) -> Rollout:
        """Carry out an operator's control of a rollout: the one dispatcher of the commands of
        ``engine/commands.py`` (pause, resume, cancel, retry-failed, continue); the engine driving it reacts."""
        rollout_id = command.rollout_id
        if isinstance(command, commands.ContinueRollout):
            return self.continue_rollout(rollout_id, actor=actor)
        rollout = self.rollout(rollout_id)
        match command:
            case commands.PauseRollout():
                events = rollout.pause()
            case commands.ResumeRollout():
                events = rollout.resume()
            case commands.CancelRollout():
                events = rollout.cancel(f"cancelled by {actor}")
            case commands.RetryFailedAgents():
                events = rollout.retry_failed(failed_agents(rollout, self._upgrades(rollout.plan)))
            case _:
                assert_never(command)
        self.append(rollout_stream_id(rollout_id), rollout.version, events, actor=actor,
                    correlation_id=rollout_id)
        if isinstance(command, commands.CancelRollout) and rollout.state in (RolloutState.PLANNED, RolloutState.FAILED):
            self._wind_up_cancelled(rollout, actor=actor)
        return self.rollout(rollout_id)

    def continue_rollout(self, rollout_id: UUID, *, actor: str) -> Rollout:
        """Finish a failed or cancelled rollout with its package: the agents that did not complete run again, on
        the same rollout (its clusters claimed again). Refused (``InvalidTransition``) while it runs or winds up
        and when every agent completed; ``Conflict`` when another rollout used its package or holds its clusters."""
        rollout = self.rollout(rollout_id)
        plan = rollout.plan
        upgrades = self._upgrades(plan)
        agents = continued_agents(rollout, upgrades)
        self._refuse_moved_on(plan, {name for name, upgrade in upgrades.items()
                                     if upgrade.state is not UpgradeState.COMPLETED})
        held = rollout_id in active_claims(self.store.read_stream(CLAIMS_STREAM))
        if held and rollout.state is RolloutState.CANCELLED:
            raise InvalidTransition(rollout.state, "continue the rollout", "its engine is still winding it up")
        used_by = self.package(plan.package_sha256).used_by
        if used_by not in (None, rollout_id) and not plan.upload_only:
            raise Conflict(f"package {plan.package_sha256[:12]} was used by rollout {used_by} and is completed: it "
                           f"cannot continue rollout {rollout_id}")
        if not held:
            self._claim(plan, actor=actor)
        try:
            self.append(rollout_stream_id(rollout_id), rollout.version, rollout.continue_rollout(agents),
                        actor=actor, correlation_id=rollout_id)
        except ConcurrencyConflict:
            if not held:
                self.release(rollout_id, actor=actor)
            raise Conflict(f"rollout {rollout_id} changed meanwhile; look at it again") from None
        return self.rollout(rollout_id)

    def _refuse_moved_on(self, plan: RolloutPlanned, names: set[str]) -> None:
        """Refuse to continue agents that run neither the version planned from nor the package's (``Conflict``):
        something else upgraded them since, so a new rollout must be planned for them."""
        versions = {a.name: a.version for a in self.agents()}
        for agent in plan.agents:
            now = versions.get(agent.name)
            if agent.name in names and now not in (agent.current_version, plan.package_version):
                raise Conflict(f"agent {agent.name} runs {now} since rollout {plan.rollout_id} planned it from "
                               f"{agent.current_version}: plan a new rollout for it")

    def _wind_up_cancelled(self, rollout: Rollout, *, actor: str) -> None:
        """A cancelled rollout that no engine is driving (never started, or failed) ends here."""
        rollout_id = rollout.plan.rollout_id
        ids = {agent.name: agent.upgrade_id for agent in rollout.plan.agents}
        upgrades = self._upgrades(rollout.plan)
        for name, events in cancellations(self.rollout(rollout_id), upgrades, (),
                                          f"the rollout was cancelled by {actor}").items():
            self.append(upgrade_stream_id(ids[name]), upgrades[name].version, events, actor=actor,
                        correlation_id=rollout_id)
        self.release(rollout_id, actor=actor)

    def _upgrades(self, plan: RolloutPlanned) -> dict[str, AgentUpgrade]:
        """The upgrade of each agent of a rollout, by agent name."""
        return {agent.name: self.upgrade(agent.upgrade_id) for agent in plan.agents}

    def resolve_doubt(self, rollout_id: UUID, agent_name: str, applied: bool, *, actor: str) -> DoubtResolution:
        """An operator's decision on the step in doubt of ``agent_name``'s upgrade in a rollout: ``applied`` (done on
        their word; after an install the agent runs the rollout's package version, recorded on its stream too) or
        not applied (the engine sends it again under the same idempotency key). Refused (``InvalidTransition``,
        nothing appended) when no step of that upgrade is in doubt.

        As the engine does with an answered install, the agent's new version is recorded before the upgrade's
        event (once: it is not recorded again when the agent already runs it), so a crash in between leaves the
        step in doubt, to be resolved again or learned from the agent, never a step done without its version. When
        the engine records something on the upgrade meanwhile, the decision is taken again on what it recorded (a
        version recorded just before stays, as after a crash in between)."""
        rollout = self.rollout(rollout_id)
        planned = next((a for a in rollout.plan.agents if a.name == agent_name), None)
        if planned is None:
            raise NotFound(f"agent {agent_name!r} is not part of rollout {rollout_id}")
        while True:
            upgrade = self.upgrade(planned.upgrade_id)
            step = upgrade.step_in_progress
            installed = applied and step is Step.INSTALL
            version_after = rollout.plan.package_version if installed and not upgrade.plan.web_only else None
            events = upgrade.resolve_doubt(applied, version_after)
            assert step is not None
            if installed:  # a new version, or (a Web package) the web upgrade
                self._record_version(agent_name, upgrade, rollout.plan.package_version, actor=actor,
                                     rollout_id=rollout_id)
            try:
                self.append(upgrade_stream_id(planned.upgrade_id), upgrade.version, events, actor=actor,
                            correlation_id=rollout_id)
            except ConcurrencyConflict:
                continue  # the engine recorded something meanwhile (it may have learned the outcome): decide again
            for event in events:
                upgrade.apply(event)
            return DoubtResolution(rollout_id=rollout_id, agent=agent_name, upgrade_id=planned.upgrade_id, step=step,
                                   attempt=upgrade.attempts[step], applied=applied, version_after=version_after,
                                   state=upgrade.state.value)

    def _record_version(self, name: str, upgrade: AgentUpgrade, version: str, *, actor: str,
                        rollout_id: UUID) -> None:
        """Record on the agent's stream that it runs ``version`` after ``upgrade``'s install, or, for a Web package,
        that its web components were upgraded (once)."""
        while True:
            record = self.agent(name)
            events = version_change(record, upgrade, Step.INSTALL, StepOutcome(version_after=version))
            if not events:
                return
            try:
                self.append(agent_stream_id(name), record.stream_version, events, actor=actor,
                            correlation_id=rollout_id)
                return
            except ConcurrencyConflict:
                continue

    def upgrade(self, upgrade_id: UUID) -> AgentUpgrade:
        return AgentUpgrade.fold(e.event for e in self.store.read_stream(upgrade_stream_id(upgrade_id)))

    def _endpoint(self, address: str) -> AgentEndpoint:
        """``address`` parsed (``host[:port]``) and allowed by the address policy, or ``InvalidInput``."""
        return self.address_policy.check(parse_address(address))

    def _gateway(self) -> AgentGateway:
        if self._agent_gateway is None:
            raise InvalidInput("no agent gateway is configured")
        return self._agent_gateway


def _check_new_agent(name: str, endpoint: AgentEndpoint, version: str, cluster: str | None,
                     existing: Sequence[AgentRecord]) -> None:
    """Refuse a registration with a malformed name, version or cluster, or a name or address in use (the address
    is parsed already)."""
    if not _NAME.fullmatch(name):
        raise InvalidInput(f"invalid agent name {shown(name)}: use 1 to 100 letters, digits, '.', '_' or '-', "
                           f"starting with a letter or digit")
    if cluster is not None and (not cluster or len(cluster) > MAX_CLUSTER_LENGTH or not cluster.isprintable()
                                or cluster != cluster.strip()):
        raise InvalidInput(f"invalid cluster name {shown(cluster)}: use 1 to {MAX_CLUSTER_LENGTH} printable "
                           f"characters, with no space at either end")
    parse_version(version)
    for agent in existing:
        if agent.name == name:
            raise Conflict(f"agent {name!r} is registered already")
    holder = _registered_at(endpoint, existing)
    if holder is not None:
        raise Conflict(f"address {endpoint} belongs to a registered agent already ({holder.name})")


def _registered_at(endpoint: AgentEndpoint, agents: Iterable[AgentRecord]) -> AgentRecord | None:
    """The agent registered at ``endpoint`` (``host`` and ``host:80`` are one place), if any."""
    for agent in agents:
        try:
            if parse_address(agent.address).same_place(endpoint):
                return agent
        except InvalidInput:
            continue  # an older address that does not parse is no place an agent can be registered at now
    return None


PAIR_HOW_TO = ("to form a pair, register the first member naming the second (--failover-partner and "
               "--failover-role), then the second naming the first")


def _check_pairing(name: str, cluster: str | None, partner_name: str, role: FailoverRole,
                   existing: Iterable[AgentRecord]) -> None:
    """Refuse a registration that would make a broken failover pair (one main and one backup agent that
    name each other, in one cluster); a partner not registered yet leaves the pair incomplete until it is."""
    if partner_name == name:
        raise InvalidInput(f"agent {name} cannot be its own failover partner: a pair is two agents, one main and "
                           f"one backup")
    partner = next((a for a in existing if a.name == partner_name), None)
    if partner is None:
        return
    refused = f"{partner_name} cannot be the failover partner of {name}"
    if partner.cluster != cluster:
        raise InvalidInput(f"{refused}: {partner_name} is in {cluster_label(partner.cluster)}, {name} would be in "
                           f"{cluster_label(cluster)}; a pair is one main and one backup agent in one cluster")
    if partner.failover_partner != name:
        names = "names no failover partner" if partner.failover_partner is None \
            else f"is paired with {partner.failover_partner}"
        raise InvalidInput(f"{refused}: {partner_name} is registered already and {names}; {PAIR_HOW_TO}")
    if partner.failover_role == role:
        raise InvalidInput(f"{refused}: {partner_name} is the {role.value} already; a pair is one main and one "
                           f"backup agent")


def _check_facts(facts: AgentFacts) -> None:
    """Refuse facts whose names are not printable text (a read model could not store them)."""
    names = [facts.os, facts.database, *facts.components, *facts.legacy_features]
    if not all(name.isprintable() for name in names):
        raise InvalidInput("an agent's facts (OS, database, components, features) must be printable text")
