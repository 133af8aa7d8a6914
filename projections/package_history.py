"""The upgrade history: every uploaded package with the rollouts that used it, and every agent's versions.

``package_history`` is the list of Available packages, which stays the upgrade history once packages are
completed; ``agent_version_history`` is the cluster-wide version of each agent's ``VersionHistory.txt``.
"""

from __future__ import annotations

from typing import Any

from dma_upgrade.engine.agent_events import (
    AGENT_STREAMS,
    AgentRegistered,
    AgentVersionChanged,
    AgentWebUpgraded,
    agent_of_stream,
)
from dma_upgrade.engine.events import Event
from dma_upgrade.engine.inventory import web_upgrade_line
from dma_upgrade.engine.rollout_events import (
    FailedAgentsRetried,
    PackageUploaded,
    PackageUsed,
    RolloutCancelled,
    RolloutCompleted,
    RolloutContinued,
    RolloutFailed,
    RolloutPlanned,
    package_of_stream,
    rollout_id_of_stream,
)
from dma_upgrade.projections.base import Recorded
from dma_upgrade.projections.tables import ColumnType as C
from dma_upgrade.projections.tables import RowAccess, TableSpec

PACKAGES = TableSpec("package_history", ("sha256",), (
    ("sha256", C.TEXT), ("file_name", C.TEXT), ("version", C.TEXT), ("cu", C.INT), ("kind", C.TEXT),
    ("size", C.INT), ("uploaded_by", C.TEXT), ("uploaded_at", C.TIMESTAMP), ("status", C.TEXT),
    ("rollouts", C.JSON), ("clusters", C.JSON),
))
PACKAGE_ROLLOUTS = TableSpec("package_rollouts", ("rollout_id",), (
    ("rollout_id", C.TEXT), ("sha256", C.TEXT), ("upload_only", C.BOOL),
))
VERSION_HISTORY = TableSpec("agent_version_history", ("agent", "seq"), (
    ("agent", C.TEXT), ("seq", C.INT), ("version", C.TEXT), ("recorded_at", C.TIMESTAMP), ("upgrade_id", C.TEXT),
))
VERSION_HEADS = TableSpec("agent_version_heads", ("agent",), (
    ("agent", C.TEXT), ("last_seq", C.INT),
))

AVAILABLE = "available"
UPLOADED_ONLY = "uploaded only"
COMPLETED = "completed"

_OUTCOMES: dict[type[Event], str] = {
    RolloutCompleted: "completed", RolloutFailed: "failed", RolloutCancelled: "cancelled",
    FailedAgentsRetried: "running", RolloutContinued: "running",
}


def package_status(used: bool, rollouts: list[dict[str, Any]]) -> str:
    """Completed once used; uploaded only while every rollout that used it was upload-only; else available."""
    if used:
        return COMPLETED
    if rollouts and all(rollout["upload_only"] for rollout in rollouts):
        return UPLOADED_ONLY
    return AVAILABLE


def _continued(rollout: dict[str, Any], event: Event, continued: dict[str, str]) -> dict[str, Any]:
    """A continued rollout's entry lists who continued it and when (each time)."""
    if not isinstance(event, RolloutContinued):
        return {}
    return {"continued": [*rollout.get("continued", []), continued]}


class PackageHistoryProjection:
    """Uploaded packages with their status and rollouts, and the versions every agent ran."""

    name = "package_history"
    tables: tuple[TableSpec, ...] = (PACKAGES, PACKAGE_ROLLOUTS, VERSION_HISTORY, VERSION_HEADS)
    event_types: frozenset[type[Event]] = frozenset({PackageUploaded, PackageUsed, RolloutPlanned, *_OUTCOMES,
                                                     AgentRegistered, AgentVersionChanged, AgentWebUpgraded})

    def handle(self, recorded: Recorded, rows: RowAccess) -> None:
        event = recorded.event
        if isinstance(event, PackageUploaded):
            self._uploaded(event, recorded, rows)
        elif isinstance(event, PackageUsed):
            self._used(event, recorded, rows)
        elif isinstance(event, RolloutPlanned):
            self._planned(event, rows)
        elif type(event) in _OUTCOMES:
            self._outcome(_OUTCOMES[type(event)], recorded, rows)
        elif isinstance(event, AgentRegistered):
            self._registered(event, recorded, rows)
        elif isinstance(event, AgentVersionChanged) and recorded.stream_id.startswith(AGENT_STREAMS):
            self._history_line(event.version, event.upgrade_id, recorded, rows)
        elif isinstance(event, AgentWebUpgraded) and recorded.stream_id.startswith(AGENT_STREAMS):
            self._history_line(web_upgrade_line(event.web_version), event.upgrade_id, recorded, rows)

    def _uploaded(self, event: PackageUploaded, recorded: Recorded, rows: RowAccess) -> None:
        manifest = event.manifest
        rows.put(PACKAGES.name, {
            "sha256": event.sha256, "file_name": event.file_name, "version": str(manifest.dataminer_version),
            "cu": manifest.cu, "kind": manifest.kind.value, "size": event.size,
            "uploaded_by": recorded.actor, "uploaded_at": recorded.recorded_at, "status": AVAILABLE,
            "rollouts": [], "clusters": [judged.model_dump(mode="json") for judged in event.clusters],
        })

    def _used(self, event: PackageUsed, recorded: Recorded, rows: RowAccess) -> None:
        """The package is completed: the rollout's entry says when, by whom and on which agent it was first used."""
        row = rows.get(PACKAGES.name, (package_of_stream(recorded.stream_id),))
        if row is None:
            return
        first_use = {"used_by": recorded.actor, "used_at": recorded.recorded_at.isoformat(), "used_agent": event.agent}
        row["rollouts"] = [dict(rollout, **first_use) if rollout["rollout_id"] == str(event.rollout_id)
                           else dict(rollout) for rollout in row["rollouts"]]
        row["status"] = package_status(True, row["rollouts"])
        rows.put(PACKAGES.name, row)

    def _planned(self, event: RolloutPlanned, rows: RowAccess) -> None:
        rollout_id = str(event.rollout_id)
        rows.put(PACKAGE_ROLLOUTS.name, {
            "rollout_id": rollout_id, "sha256": event.package_sha256, "upload_only": event.upload_only,
        })
        row = rows.get(PACKAGES.name, (event.package_sha256,))
        if row is None:
            return
        rollouts = [dict(rollout) for rollout in row["rollouts"]]
        rollouts.append({"rollout_id": rollout_id, "upload_only": event.upload_only, "outcome": "running"})
        row["rollouts"] = rollouts
        row["status"] = package_status(row["status"] == COMPLETED, rollouts)
        rows.put(PACKAGES.name, row)

    def _outcome(self, outcome: str, recorded: Recorded, rows: RowAccess) -> None:
        rollout_id = rollout_id_of_stream(recorded.stream_id)
        link = rows.get(PACKAGE_ROLLOUTS.name, (rollout_id,))
        if link is None:
            return
        row = rows.get(PACKAGES.name, (link["sha256"],))
        if row is None:
            return
        continued = {"by": recorded.actor, "at": recorded.recorded_at.isoformat()}
        row["rollouts"] = [dict(rollout, outcome=outcome, **_continued(rollout, recorded.event, continued))
                           if rollout["rollout_id"] == rollout_id else dict(rollout) for rollout in row["rollouts"]]
        rows.put(PACKAGES.name, row)

    def _registered(self, event: AgentRegistered, recorded: Recorded, rows: RowAccess) -> None:
        if rows.get(VERSION_HEADS.name, (event.name,)) is not None:
            return  # names are unique: a repeated registration does not restart the history
        rows.put(VERSION_HISTORY.name, {
            "agent": event.name, "seq": 0, "version": event.version, "recorded_at": recorded.recorded_at,
            "upgrade_id": None,
        })
        rows.put(VERSION_HEADS.name, {"agent": event.name, "last_seq": 0})

    def _history_line(self, version: str, upgrade_id: str | None, recorded: Recorded, rows: RowAccess) -> None:
        """The next line of the agent's VersionHistory.txt: a new version, or a web upgrade."""
        agent = agent_of_stream(recorded.stream_id)
        head = rows.get(VERSION_HEADS.name, (agent,))
        seq = 0 if head is None else head["last_seq"] + 1
        rows.put(VERSION_HISTORY.name, {
            "agent": agent, "seq": seq, "version": version, "recorded_at": recorded.recorded_at,
            "upgrade_id": upgrade_id,
        })
        rows.put(VERSION_HEADS.name, {"agent": agent, "last_seq": seq})
