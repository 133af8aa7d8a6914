"""Small folds the service reads: uploaded packages, settings, and which rollouts hold which clusters."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from dma_upgrade.engine.errors import Conflict
from dma_upgrade.engine.events import Event, RecordedEvent
from dma_upgrade.engine.package_acceptance import ClusterAcceptance
from dma_upgrade.engine.packages import PackageManifest
from dma_upgrade.engine.rollout_events import (
    PackageUploaded,
    PackageUsed,
    RolloutClaimed,
    RolloutReleased,
    SettingChanged,
    package_of_stream,
)


@dataclass
class PackageRecord:
    """One uploaded package; ``used_by`` is the rollout that executed it (it is then completed)."""

    sha256: str
    file_name: str
    size: int
    manifest: PackageManifest
    uploaded_at: datetime
    uploaded_by: str
    used_by: UUID | None = None
    stream_version: int = 1
    clusters: tuple[ClusterAcceptance, ...] = ()
    """Which systems accepted it on upload (``engine.package_acceptance``)."""

    @property
    def status(self) -> str:
        return "completed" if self.used_by is not None else "available"


def fold_packages(events: Iterable[RecordedEvent]) -> dict[str, PackageRecord]:
    """Every uploaded package by SHA-256, from the ``package-`` streams."""
    packages: dict[str, PackageRecord] = {}
    for recorded in events:
        event = recorded.event
        if isinstance(event, PackageUploaded):
            packages[event.sha256] = PackageRecord(
                sha256=event.sha256, file_name=event.file_name, size=event.size, manifest=event.manifest,
                uploaded_at=recorded.recorded_at, uploaded_by=recorded.metadata.actor, clusters=event.clusters)
        elif isinstance(event, PackageUsed):
            record = packages[package_of_stream(recorded.stream_id)]
            record.used_by = event.rollout_id
            record.stream_version = recorded.stream_version
    return packages


def package_use(record: PackageRecord, rollout_id: UUID, agent: str) -> list[Event]:
    """The events that mark a package used by ``rollout_id`` as ``agent`` begins installing it: none when that
    rollout used it already; ``Conflict`` when another one did (a package executes one rollout)."""
    if record.used_by == rollout_id:
        return []
    if record.used_by is not None:
        raise Conflict(f"package {record.file_name} was used by rollout {record.used_by} and is completed: it "
                       f"cannot execute rollout {rollout_id}")
    return [PackageUsed(rollout_id=rollout_id, agent=agent)]


def fold_settings(events: Iterable[RecordedEvent]) -> dict[str, str]:
    """The latest value of every setting that was set."""
    return {e.event.key: e.event.value for e in events if isinstance(e.event, SettingChanged)}


@dataclass(frozen=True)
class Claim:
    """A rollout's hold on clusters and agents."""

    rollout_id: UUID
    clusters: frozenset[str]
    agents: frozenset[str]


def active_claims(events: Iterable[RecordedEvent]) -> dict[UUID, Claim]:
    """Claims not yet released, by rollout."""
    claims: dict[UUID, Claim] = {}
    for recorded in events:
        event = recorded.event
        if isinstance(event, RolloutClaimed):
            claims[event.rollout_id] = Claim(event.rollout_id, frozenset(event.clusters), frozenset(event.agents))
        elif isinstance(event, RolloutReleased):
            claims.pop(event.rollout_id, None)
    return claims
