"""Bodies the browser pages read besides the resources': who the caller is, and each system's versions."""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import Field

from dma_upgrade.adapters.access.tokens import Principal
from dma_upgrade.adapters.api.models import ApiModel
from dma_upgrade.engine.inventory import AgentRecord
from dma_upgrade.engine.versions import InvalidVersion, parse_version, version_identity, version_sort_key


class CallerOut(ApiModel):
    """The caller a token stands for: its name (the actor its calls record) and its role."""

    name: str
    role: str = Field(description="viewer, operator or admin; each may do everything the roles before it may")

    @classmethod
    def of(cls, principal: Principal) -> CallerOut:
        """The authenticated caller as a body."""
        return cls(name=principal.name, role=principal.role.label)


class VersionOut(ApiModel):
    """One DataMiner version as written, parsed, and the agents of a system that run it."""

    text: str = Field(description="as the first of its agents reports it")
    release: str | None = Field(description="A.B.C.D without CU or build (null: the text is no version)")
    cu: int | None
    build: int | None
    track: str | None = Field(description="Main Release or Feature Release")
    agents: list[str]


class ClusterOut(ApiModel):
    """One DataMiner System (a cluster, or an agent in no cluster) and the versions its agents run."""

    cluster: str | None
    agents: list[str]
    versions: list[VersionOut] = Field(description="oldest first; equal versions in other notations are one")
    mixed: bool = Field(description="its agents run different versions (all DMAs of a cluster must run one)")

    @classmethod
    def all_of(cls, records: Iterable[AgentRecord]) -> list[ClusterOut]:
        """Every system of ``records``: the clusters by name, then each agent in no cluster on its own."""
        systems: dict[tuple[bool, str], list[AgentRecord]] = {}
        for record in records:
            key = (False, record.cluster) if record.cluster is not None else (True, record.name)
            systems.setdefault(key, []).append(record)
        return [cls._of(members[0].cluster, members) for _, members in sorted(systems.items())]

    @classmethod
    def _of(cls, cluster: str | None, members: list[AgentRecord]) -> ClusterOut:
        by_version: dict[str, list[AgentRecord]] = {}
        for record in members:
            by_version.setdefault(version_identity(record.version), []).append(record)
        versions = [_version(group) for group in by_version.values()]
        versions.sort(key=lambda version: version_sort_key(version.text))
        return cls(cluster=cluster, agents=[record.name for record in members], versions=versions,
                   mixed=len(versions) > 1)


def _version(group: list[AgentRecord]) -> VersionOut:
    text, agents = group[0].version, [record.name for record in group]
    try:
        parsed = parse_version(text)
    except InvalidVersion:
        return VersionOut(text=text, release=None, cu=None, build=None, track=None, agents=agents)
    return VersionOut(text=text, release=parsed.release_number, cu=parsed.cu, build=parsed.build,
                      track=parsed.release_track.value, agents=agents)
