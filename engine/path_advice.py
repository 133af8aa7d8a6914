"""The upgrade-path advisor: the chain of versions to install, for a version, an agent or a cluster, with the
uploaded packages that cover each hop."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from dma_upgrade.engine.errors import InvalidInput, NotFound
from dma_upgrade.engine.inventory import AgentRecord
from dma_upgrade.engine.packages import PackageKind
from dma_upgrade.engine.records import PackageRecord
from dma_upgrade.engine.upgrade_paths import Hop, UpgradePath, upgrade_path
from dma_upgrade.engine.versions import DataMinerVersion, parse_version


@dataclass(frozen=True)
class PathQuery:
    """Where the path starts: exactly one of a version, an agent or a cluster; and where it ends."""

    target: str
    source: str | None = None
    agent: str | None = None
    cluster: str | None = None


@dataclass(frozen=True)
class HopAdvice:
    """One hop and the uploaded Full packages that install a version it accepts (oldest upload first)."""

    hop: Hop
    packages: tuple[PackageRecord, ...]


@dataclass(frozen=True)
class PathAdvice:
    """The path from one current version (run by ``agents``, none for a bare version) to the target."""

    agents: tuple[str, ...]
    path: UpgradePath
    hops: tuple[HopAdvice, ...]


def advise(query: PathQuery, inventory: Sequence[AgentRecord], packages: Sequence[PackageRecord]) -> list[PathAdvice]:
    """One path per distinct current version among the queried agents (one for a bare version)."""
    if sum(value is not None for value in (query.source, query.agent, query.cluster)) != 1:
        raise InvalidInput("give exactly one of --from VERSION, --agent NAME or --cluster NAME")
    target = parse_version(query.target)
    if query.source is not None:
        return [_advice(parse_version(query.source), target, (), packages)]
    if query.agent is not None:
        chosen = [agent for agent in inventory if agent.name == query.agent]
        if not chosen:
            raise NotFound(f"unknown agent {query.agent!r}")
    else:
        chosen = [agent for agent in inventory if agent.cluster == query.cluster]
        if not chosen:
            raise NotFound(f"no agent is registered in cluster {query.cluster!r}")
    by_version: dict[DataMinerVersion, list[str]] = {}
    for agent in chosen:
        by_version.setdefault(parse_version(agent.version), []).append(agent.name)
    return [_advice(current, target, tuple(names), packages) for current, names in sorted(by_version.items())]


def _advice(current: DataMinerVersion, target: DataMinerVersion, agents: tuple[str, ...],
            packages: Sequence[PackageRecord]) -> PathAdvice:
    path = upgrade_path(current, target)
    full = [p for p in packages if p.manifest.kind is PackageKind.FULL]
    hops = tuple(HopAdvice(hop, tuple(p for p in full if hop.covers(p.manifest.dataminer_version)))
                 for hop in path.hops)
    return PathAdvice(agents, path, hops)
