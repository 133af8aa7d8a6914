"""Which systems accept a package on upload: prerequisites judged per cluster, not across the whole inventory.

A cluster (a DataMiner System) accepts a package unless one of its agents refuses it: an agent whose version
refuses unmet prerequisites (``engine.versions.refuses_unmet_prerequisites``) and that fails a check. An agent in
no cluster is a system of its own. Agents that never reported facts cannot be judged and count for nothing.
"""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import BaseModel, ConfigDict

from dma_upgrade.engine.inventory import AgentRecord
from dma_upgrade.engine.packages import PackageManifest, evaluate_prerequisites


class ClusterAcceptance(BaseModel):
    """Whether one system accepts the package, and, when it does not, the failed checks that refuse it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    cluster: str | None
    """The cluster, or None for an agent in no cluster (then ``agents`` names that one agent)."""
    agents: tuple[str, ...]
    refusals: tuple[str, ...] = ()

    @property
    def accepted(self) -> bool:
        return not self.refusals

    @property
    def label(self) -> str:
        """``cluster north``, or ``agent dma-9`` for an agent in no cluster."""
        return f"cluster {self.cluster}" if self.cluster is not None else f"agent {self.agents[0]}"

    def __str__(self) -> str:
        return f"{self.label}: " + ("accepts" if self.accepted else "refuses (" + "; ".join(self.refusals) + ")")


def judge_clusters(manifest: PackageManifest, agents: Iterable[AgentRecord]) -> tuple[ClusterAcceptance, ...]:
    """Every system of ``agents`` that can be judged (some agent reported facts), clusters by name first."""
    systems: dict[tuple[str, str], list[AgentRecord]] = {}
    for agent in agents:
        if agent.facts is not None:
            key = ("cluster", agent.cluster) if agent.cluster is not None else ("agent", agent.name)
            systems.setdefault(key, []).append(agent)
    judged: list[ClusterAcceptance] = []
    for (kind, _), members in sorted(systems.items(), key=lambda item: (item[0][0] != "cluster", item[0][1])):
        refusals = tuple(str(failure) for agent in members if agent.facts is not None
                         for failure in evaluate_prerequisites(manifest, agent.name, agent.facts) if failure.blocking)
        judged.append(ClusterAcceptance(cluster=members[0].cluster if kind == "cluster" else None,
                                        agents=tuple(sorted(a.name for a in members)), refusals=refusals))
    return tuple(judged)


def refusal_by_every_system(judged: tuple[ClusterAcceptance, ...]) -> str | None:
    """Why no system accepts the package (one line), or None when one does or none could be judged."""
    if not judged or any(system.accepted for system in judged):
        return None
    return "no cluster accepts it: " + "; ".join(
        "; ".join(system.refusals) if system.cluster is None else f"{system.label}: {'; '.join(system.refusals)}"
        for system in judged)
