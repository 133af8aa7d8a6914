"""Reading progress: now (from the progress tables as they are, with their lag) or as it was (by folding events)."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from dma_upgrade.adapters.read.freshness import Reading, ReadSide, behind, checkpoint, lag_since
from dma_upgrade.adapters.sql.projection_runner import read_rows
from dma_upgrade.engine.errors import InvalidInput, NotFound
from dma_upgrade.engine.ports import EventStore
from dma_upgrade.projections.progress import AGENTS, ROLLOUTS, ProgressProjection
from dma_upgrade.projections.tables import MemoryRows, Row

PROGRESS = ProgressProjection.name


def current_progress(side: ReadSide, rollout_id: UUID | None = None) -> Reading[list[tuple[Row, list[Row]]]]:
    """Every rollout (or one) with its agents, from the progress tables as they are, and how far behind they are.

    Reads only: catching the tables up is the projections runner's job. ``NotFound`` for a rollout the tables
    do not hold (yet: the message says so when they are behind)."""
    position = checkpoint(side, PROGRESS)
    where = {"rollout_id": str(rollout_id)} if rollout_id else {}
    rollouts = sorted(read_rows(side.engine, ROLLOUTS, **where), key=lambda r: r["planned_at"])
    agents: dict[str, list[Row]] = {r["rollout_id"]: [] for r in rollouts}
    for agent in read_rows(side.engine, AGENTS, **where):  # one query for all, not one per rollout
        agents.get(agent["rollout_id"], []).append(agent)
    views = [(r, agents[r["rollout_id"]]) for r in rollouts]
    lag = lag_since(side, PROGRESS, position)
    if rollout_id is not None and not rollouts:
        raise NotFound(f"unknown rollout {rollout_id}" + behind(lag))
    return Reading(views, lag)


def progress_as_of(store: EventStore, rollout_id: UUID, *, at_time: datetime | None = None,
                   at_position: int | None = None, now: datetime) -> tuple[Row, list[Row]]:
    """One rollout's progress as it was at a time or a position, folded from the events up to it."""
    head = store.head_position()
    first = next(store.read_records(page_size=1), None)
    if first is None:
        raise InvalidInput("the event store is empty: there is no past to show")
    if at_position is not None and not 1 <= at_position <= head:
        raise InvalidInput(f"--at-position must be between 1 and {head}, got {at_position}")
    if at_time is not None:
        if at_time > now:
            raise InvalidInput(f"--as-of {at_time.isoformat()} is in the future")
        if at_time < first.recorded_at:
            raise InvalidInput(f"--as-of {at_time.isoformat()} is before the first event "
                               f"({first.recorded_at.isoformat()})")
    projection = ProgressProjection()
    rows = MemoryRows(projection.tables)
    for recorded in store.read_all(page_size=5000):
        if (at_position is not None and recorded.position > at_position) or \
                (at_time is not None and recorded.recorded_at > at_time):
            break
        projection.handle(recorded, rows)
    rollout = rows.get(ROLLOUTS.name, (str(rollout_id),))
    if rollout is None:
        raise NotFound(f"rollout {rollout_id} did not exist yet at that point")
    return rollout, [a for a in rows.rows(AGENTS.name) if a["rollout_id"] == str(rollout_id)]
