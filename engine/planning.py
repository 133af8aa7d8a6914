"""Planning a rollout up front: which agents, in which order, visiting which states, with which warnings."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

from dma_upgrade.engine.agent_events import FailoverRole
from dma_upgrade.engine.errors import InvalidInput
from dma_upgrade.engine.inventory import AgentRecord, cluster_label, clusters_on_mixed_versions
from dma_upgrade.engine.packages import PackageKind, PackageManifest, PackageRejected, evaluate_prerequisites
from dma_upgrade.engine.rollout_events import FailoverPolicy, PlannedAgent, RolloutPlanned, StepPolicy
from dma_upgrade.engine.upgrade_events import AgentUpgradePlan, UpgradeOptions
from dma_upgrade.engine.upgrade_paths import check_upgrade_path, upgrade_path_problems
from dma_upgrade.engine.version_choice import VersionChoice, judge_versions
from dma_upgrade.engine.versions import DataMinerVersion, parse_version

_LIMIT = re.compile(r"\s*(\d{1,9})\s*(%?)\s*")


def resolve_limit(text: str, total: int, *, option: str, minimum: int) -> int:
    """Turn ``N`` or ``P%`` of ``total`` agents into a count (a percentage rounds up); ``InvalidInput`` when it is
    malformed, over 100% or under ``minimum`` (``--max-concurrent`` 0 would start no agent: it is refused, not
    raised to 1; ``--max-errors`` 0 stops at the first failure)."""
    match = _LIMIT.fullmatch(text)
    if match is None:
        raise InvalidInput(f"{option} must be a count N or a percentage P% (at most 9 digits), got {text!r}")
    value = int(match.group(1))
    if match.group(2):
        if value > 100:
            raise InvalidInput(f"{option} percentage must be at most 100%, got {text!r}")
        value = math.ceil(total * value / 100)
    if value < minimum:
        raise InvalidInput(f"{option} must be at least {minimum}, got {text!r}")
    return value


@dataclass(frozen=True)
class RolloutRequest:
    """What an operator asks for; ``failover_policy`` is already resolved (never ``default``)."""

    package_sha256: str
    manifest: PackageManifest
    agents: Sequence[AgentRecord]
    inventory: Sequence[AgentRecord]
    options: UpgradeOptions
    failover_policy: FailoverPolicy
    upload_only: bool = False
    max_concurrent: str | None = None
    max_errors: str | None = None
    delayed_start_seconds: int = 0
    step_policy: StepPolicy = field(default_factory=StepPolicy)
    start_at: datetime | None = None
    allow_partial_pair: bool = False
    version_choice: VersionChoice = field(default_factory=VersionChoice)
    skip_path_check: bool = False

    @property
    def installs_dataminer(self) -> bool:
        """Whether the rollout installs DataMiner (a Full package, not upload-only): only then does DataMiner
        stop, its version change and failover pairs switch over."""
        return not self.upload_only and self.manifest.kind is PackageKind.FULL

    @property
    def web_only(self) -> bool:
        """Whether the rollout installs a Web package: the web components only, with DataMiner running."""
        return not self.upload_only and self.manifest.kind is PackageKind.WEB


SWITCH_OVER_POLICIES = frozenset({FailoverPolicy.BACKUP_FIRST, FailoverPolicy.BACKUP_FIRST_SWITCH_BACK})
"""The policies that upgrade a failover pair backup first with a switch-over: they need the whole pair."""


def plan_rollout(request: RolloutRequest, rollout_id: UUID, new_id: Callable[[], UUID]) -> RolloutPlanned:
    """Compute the whole plan, or raise ``PackageRejected`` when an agent refuses the package."""
    if request.failover_policy is FailoverPolicy.DEFAULT:
        raise InvalidInput("the failover policy must be resolved before planning")
    if not request.agents:
        raise InvalidInput("a rollout needs at least one agent")
    selected = {agent.name: agent for agent in request.agents}
    target = request.manifest.dataminer_version
    problems = _pair_problems(request, selected)
    switching = request.failover_policy in SWITCH_OVER_POLICIES and request.installs_dataminer
    if switching and problems and not request.allow_partial_pair:
        raise InvalidInput(
            f"failover policy {request.failover_policy.value} upgrades a failover pair as one (backup first, then a "
            f"switch-over), so it needs both members of a complete pair: "
            + "; ".join(f"agent {name}: {problem}" for name, problem in problems.items())
            + ". Add the missing partner, choose --failover-policy simultaneous, or pass --allow-partial-pair to "
              "upgrade such an agent without its partner and without a switch-over")
    version_warnings = judge_versions(request.agents, target, request.version_choice) \
        if request.installs_dataminer else {}
    warnings: list[str] = []
    notes: list[str] = []
    planned: list[PlannedAgent] = []
    for agent in request.agents:
        agent_warnings = _agent_warnings(agent, request)
        if agent.name in version_warnings:
            agent_warnings.append(version_warnings[agent.name])
        alone = switching and agent.name in problems
        if alone:
            agent_warnings.append(
                f"agent {agent.name}: upgraded without its failover partner {agent.failover_partner} "
                f"(--allow-partial-pair): no switch-over; if {agent.name} is the active member the pair is down "
                f"during its upgrade")
        switch_over, after = (False, ()) if alone else _failover_part(agent, selected, request.failover_policy,
                                                                      not request.installs_dataminer)
        plan = AgentUpgradePlan(options=request.options, upload_only=request.upload_only,
                                switch_over=switch_over, web_only=request.web_only,
                                delayed_start_seconds=request.delayed_start_seconds
                                if request.options.delayed_start else 0)
        agent_notes = [_web_note(target)] if request.web_only else _pair_notes(agent, selected, problems, plan,
                                                                               request)
        planned.append(PlannedAgent(name=agent.name, address=agent.address, cluster=agent.cluster,
                                    current_version=agent.version, upgrade_id=new_id(), plan=plan,
                                    failover_role=agent.failover_role if agent.failover_partner in selected
                                    else None,
                                    after=after, warnings=tuple(agent_warnings), notes=tuple(agent_notes)))
        warnings.extend(agent_warnings)
        notes += [note for note in agent_notes if note not in notes]  # a pair's note once, not per member
    warnings.extend(_cluster_warnings(request, selected, str(target)))
    total = len(planned)
    return RolloutPlanned(
        rollout_id=rollout_id, package_sha256=request.package_sha256, package_version=str(target),
        options=request.options, upload_only=request.upload_only, failover_policy=request.failover_policy,
        agents=tuple(planned),
        max_concurrent=resolve_limit(request.max_concurrent or str(total), total, option="--max-concurrent",
                                     minimum=1),
        max_errors=resolve_limit(request.max_errors or str(total), total, option="--max-errors", minimum=0),
        step_policy=request.step_policy, start_at=request.start_at, warnings=tuple(warnings),
        allow_partial_pair=request.allow_partial_pair, notes=tuple(notes),
        reinstall=request.version_choice.reinstall, allow_downgrade=request.version_choice.allow_downgrade,
        skip_path_check=request.skip_path_check,
    )


def _agent_warnings(agent: AgentRecord, request: RolloutRequest) -> list[str]:
    warnings: list[str] = []
    current = parse_version(agent.version)
    target = request.manifest.dataminer_version
    if agent.facts is not None:
        failures = evaluate_prerequisites(request.manifest, agent.name, agent.facts)
        blocking = [f for f in failures if f.blocking]
        if blocking:
            raise PackageRejected(request.manifest.version, "; ".join(str(f) for f in blocking))
        warnings.extend(f"{failure} (accepted: {agent.version} predates the refusal)" for failure in failures)
        if not request.options.stop_snmp and agent.facts.snmp_agent_port == agent.facts.windows_snmp_port:
            warnings.append(f"agent {agent.name}: Stop SNMP is off and SLSNMPAgent and Windows SNMP both "
                            f"use UDP port {agent.facts.snmp_agent_port}: they will conflict")
    if request.installs_dataminer:
        if request.skip_path_check:
            warnings.extend(f"agent {agent.name}: {problem} (--skip-path-check)"
                            for problem in upgrade_path_problems(current, target))
        else:
            check_upgrade_path(agent.name, current, target)
    return warnings


def _web_note(target: DataMinerVersion) -> str:
    return (f"web upgrade: only the web components are updated, to {target}; DataMiner keeps running and its "
            f"version stays as it is (no SNMP stop, reboot, start or switch-over)")


def _pair_problems(request: RolloutRequest, selected: dict[str, AgentRecord]) -> dict[str, str]:
    """Per selected member of a failover pair, why it cannot be upgraded as one pair with its partner here."""
    known = {agent.name: agent for agent in request.inventory}
    problems: dict[str, str] = {}
    for agent in request.agents:
        name, partner_name = agent.name, agent.failover_partner
        if partner_name is None:
            continue
        partner = known.get(partner_name)
        if partner is None:
            problems[name] = (f"its failover partner {partner_name} is not registered (the pair is incomplete "
                              f"until {partner_name} is registered naming {name} as its partner)")
        elif partner.failover_partner != name:
            names = "names no partner" if partner.failover_partner is None \
                else f"names {partner.failover_partner} as its partner"
            problems[name] = f"its failover partner {partner_name} {names}, not {name} (the pair is incomplete)"
        elif partner.cluster != agent.cluster:
            problems[name] = (f"its failover partner {partner_name} is in {cluster_label(partner.cluster)}, "
                              f"{name} in {cluster_label(agent.cluster)}")
        elif partner.failover_role == agent.failover_role:
            role = agent.failover_role.value if agent.failover_role is not None else "no role"
            problems[name] = f"its failover partner {partner_name} has the same role ({role})"
        elif partner_name not in selected:
            problems[name] = f"its failover partner {partner_name} is not in this rollout"
    return problems


def _pair_notes(agent: AgentRecord, selected: dict[str, AgentRecord], problems: dict[str, str],
                plan: AgentUpgradePlan, request: RolloutRequest) -> list[str]:
    """What this agent's failover pair goes through in this rollout."""
    partner = agent.failover_partner
    if not request.installs_dataminer or partner is None:
        return []
    notes: list[str] = []
    if request.failover_policy is FailoverPolicy.SIMULTANEOUS and agent.name not in problems \
            and partner in selected:
        main, backup = (agent.name, partner) if agent.failover_role is FailoverRole.MAIN else (partner, agent.name)
        notes.append(f"pair {main}/{backup}: the pair is down together during its upgrade "
                     f"(failover policy simultaneous)")
    if plan.switch_over and not request.options.auto_start:
        notes.append(f"agent {agent.name}: Auto Start is off: the switch-over waits for a manual start of "
                     f"{agent.name} (dma-upgrade agents start {agent.name})")
    return notes


def _failover_part(agent: AgentRecord, selected: dict[str, AgentRecord], policy: FailoverPolicy,
                   keeps_running: bool) -> tuple[bool, tuple[str, ...]]:
    """Whether this agent switches over, and which agents must complete before it starts (none when DataMiner
    ``keeps_running``: upload-only and web-only rollouts)."""
    partner = agent.failover_partner
    if keeps_running or partner is None or partner not in selected or policy is FailoverPolicy.SIMULTANEOUS:
        return False, ()
    if agent.failover_role is FailoverRole.BACKUP:
        return True, ()
    return policy is FailoverPolicy.BACKUP_FIRST_SWITCH_BACK, (partner,)


def _cluster_warnings(request: RolloutRequest, selected: dict[str, AgentRecord], target: str) -> list[str]:
    warnings = [f"cluster {cluster} runs mixed versions now: {', '.join(versions)}"
                for cluster, versions in clusters_on_mixed_versions(request.inventory).items()
                if any(a.cluster == cluster for a in request.agents)]
    if not request.installs_dataminer:
        return warnings
    for agent in request.agents:
        partner = agent.failover_partner
        if partner is not None and partner not in selected:
            warnings.append(f"agent {agent.name}: its failover partner {partner} is not in this rollout; "
                            f"the pair would run different versions")
    after = {a.name: (target if a.name in selected else a.version) for a in request.inventory}
    for cluster, versions in clusters_on_mixed_versions(
            [AgentRecord(name=a.name, address=a.address, cluster=a.cluster, version=after[a.name])
             for a in request.inventory]).items():
        if any(a.cluster == cluster for a in request.agents):
            warnings.append(f"cluster {cluster} will be left on mixed versions: {', '.join(versions)}")
    return warnings
