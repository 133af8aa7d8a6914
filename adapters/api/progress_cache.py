"""The progress tables held by one API process, refreshed from the rows changed since the last read.

Every row of the progress projection carries ``last_position``: the log position of the last event that
changed it (rows are put, never deleted; a rebuild puts them back as they were). The rows an event
changes commit in one transaction, so a refresh reads only the rows whose ``last_position`` is past the
highest one already held (per table), and re-serialises only the rollouts those rows belong to. The
Progress tab polls ``/api/v1/progress`` every second: with this, a poll costs what changed since the
last one, not every rollout ever run.

A read never catches the projection up (``serve``'s follower does): each answer says where the tables stood
(``Lag``), read before the rows, so the lag it gives is never less than the answer's.
"""

from __future__ import annotations

import threading
from uuid import UUID

import sqlalchemy as sa

from dma_upgrade.adapters.read.freshness import Lag, ReadSide, behind, checkpoint, lag_since
from dma_upgrade.adapters.read.progress_queries import PROGRESS
from dma_upgrade.adapters.shapes.models import AgentProgressOut, RolloutProgressOut
from dma_upgrade.adapters.sql.read_models import from_sql, sql_table
from dma_upgrade.engine.errors import NotFound
from dma_upgrade.projections.progress import AGENTS, ROLLOUTS
from dma_upgrade.projections.tables import Row, TableSpec


class ProgressCache:
    """Rollouts and their agents from the progress projection as it is, refreshed on each read; JSON kept per
    rollout. Each read answers with the projection's lag."""

    def __init__(self, side: ReadSide) -> None:
        self._side = side
        self._lock = threading.Lock()
        self._seen = {ROLLOUTS.name: 0, AGENTS.name: 0}
        self._rollouts: dict[str, Row] = {}
        self._agents: dict[str, dict[str, Row]] = {}
        self._json: dict[str, bytes] = {}
        self._order: list[str] = []

    def all_json(self) -> tuple[bytes, Lag]:
        """Every rollout, oldest first, with its agents: a JSON array of ``RolloutProgressOut``."""
        with self._lock:
            lag = self._refresh()
            return b"[" + b",".join(self._json[r] for r in self._order) + b"]", lag

    def rollout_json(self, rollout_id: UUID) -> tuple[bytes, Lag]:
        """One rollout with its agents as a ``RolloutProgressOut`` (``NotFound`` when unknown)."""
        with self._lock:
            lag = self._refresh()
            return self._json[self._known(rollout_id, lag)], lag

    def agent(self, rollout_id: UUID, agent: str) -> tuple[AgentProgressOut, Lag]:
        """One agent's upgrade within a rollout (``NotFound`` when it is not part of it)."""
        with self._lock:
            lag = self._refresh()
            rows = self._agents.get(self._known(rollout_id, lag), {}).values()
            row = next((a for a in rows if a["agent"] == agent), None)
        if row is None:
            raise NotFound(f"agent {agent!r} is not part of rollout {rollout_id}" + behind(lag))
        return AgentProgressOut(**row), lag

    def _known(self, rollout_id: UUID, lag: Lag) -> str:
        key = str(rollout_id)
        if key not in self._rollouts:
            raise NotFound(f"unknown rollout {rollout_id}" + behind(lag))
        return key

    def _refresh(self) -> Lag:
        """Take in the rows changed since the last refresh; the lag of what is held now."""
        position = checkpoint(self._side, PROGRESS)
        self._take_changes()
        return lag_since(self._side, PROGRESS, position)

    def _take_changes(self) -> None:
        with self._side.engine.connect() as conn, conn.begin():
            rollouts = self._changed(conn, ROLLOUTS)
            agents = self._changed(conn, AGENTS)
        if not rollouts and not agents:
            return
        touched = {r["rollout_id"] for r in rollouts} | {a["rollout_id"] for a in agents}
        for row in rollouts:
            self._rollouts[row["rollout_id"]] = row
        for row in agents:
            self._agents.setdefault(row["rollout_id"], {})[row["upgrade_id"]] = row
        for rollout_id in touched & self._rollouts.keys():
            view = RolloutProgressOut.of(self._rollouts[rollout_id], list(self._agents.get(rollout_id, {}).values()))
            self._json[rollout_id] = view.model_dump_json().encode()
        if rollouts:
            self._order = sorted(self._rollouts, key=lambda r: self._rollouts[r]["planned_at"])

    def _changed(self, conn: sa.Connection, spec: TableSpec) -> list[Row]:
        """The rows of ``spec`` changed since the last refresh; moves its high-water mark."""
        table = sql_table(spec)
        query = sa.select(table).where(table.c.last_position > self._seen[spec.name])
        rows = [from_sql(spec, row) for row in conn.execute(query)]
        if rows:
            self._seen[spec.name] = max(r["last_position"] for r in rows)
        return rows
