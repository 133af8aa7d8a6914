"""The progress tables held by one API process, refreshed from the rows changed since the last read.

Every row of the progress projection carries ``last_position``: the log position of the last event that
changed it (rows are put, never deleted; a rebuild puts them back as they were). The rows an event
changes commit in one transaction, so a refresh reads only the rows whose ``last_position`` is past the
highest one already held (per table), and re-serialises only the rollouts those rows belong to. The
Progress tab polls ``/api/v1/progress`` every second: with this, a poll costs what changed since the
last one, not every rollout ever run.
"""

from __future__ import annotations

import threading
from uuid import UUID

import sqlalchemy as sa

from dma_upgrade.adapters.api.models import AgentProgressOut, RolloutProgressOut
from dma_upgrade.adapters.bootstrap import Container
from dma_upgrade.adapters.sql.read_models import from_sql, sql_table
from dma_upgrade.engine.errors import NotFound
from dma_upgrade.projections.progress import AGENTS, ROLLOUTS
from dma_upgrade.projections.tables import Row, TableSpec


class ProgressCache:
    """Rollouts and their agents from the progress projection, caught up on each read; JSON kept per rollout."""

    def __init__(self, container: Container) -> None:
        self._container = container
        self._lock = threading.Lock()
        self._seen = {ROLLOUTS.name: 0, AGENTS.name: 0}
        self._rollouts: dict[str, Row] = {}
        self._agents: dict[str, dict[str, Row]] = {}
        self._json: dict[str, bytes] = {}
        self._order: list[str] = []

    def all_json(self) -> bytes:
        """Every rollout, oldest first, with its agents: a JSON array of ``RolloutProgressOut``."""
        with self._lock:
            self._refresh()
            return b"[" + b",".join(self._json[r] for r in self._order) + b"]"

    def rollout_json(self, rollout_id: UUID) -> bytes:
        """One rollout with its agents as a ``RolloutProgressOut`` (``NotFound`` when unknown)."""
        with self._lock:
            self._refresh()
            return self._json[self._known(rollout_id)]

    def agent(self, rollout_id: UUID, agent: str) -> AgentProgressOut:
        """One agent's upgrade within a rollout (``NotFound`` when it is not part of it)."""
        with self._lock:
            self._refresh()
            rows = self._agents.get(self._known(rollout_id), {}).values()
            row = next((a for a in rows if a["agent"] == agent), None)
        if row is None:
            raise NotFound(f"agent {agent!r} is not part of rollout {rollout_id}")
        return AgentProgressOut(**row)

    def _known(self, rollout_id: UUID) -> str:
        key = str(rollout_id)
        if key not in self._rollouts:
            raise NotFound(f"unknown rollout {rollout_id}")
        return key

    def _refresh(self) -> None:
        self._container.projections.catch_up(["progress"])
        with self._container.engine.connect() as conn, conn.begin():
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
