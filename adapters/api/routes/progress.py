"""``/api/v1/progress``: the Progress tab, now or as it was at a time or a position."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query

from adapters.api.context import Context, Viewer
from adapters.api.errors import ERROR_RESPONSES
from adapters.api.models import AgentProgressOut, RolloutProgressOut
from adapters.progress_queries import current_progress, progress_as_of
from engine.errors import InvalidInput, NotFound

router = APIRouter(prefix="/api/v1/progress", tags=["progress"], responses=ERROR_RESPONSES)


@router.get("")
def all_progress(context: Context, _: Viewer) -> list[RolloutProgressOut]:
    """Every rollout, oldest first, with a row per agent."""
    return [RolloutProgressOut.of(*view) for view in current_progress(context.container)]


@router.get("/{rollout_id}")
def rollout_progress(
        rollout_id: UUID, context: Context, _: Viewer,
        as_of: Annotated[datetime | None, Query(description="as it was at this time (UTC when no zone)")] = None,
        at_position: Annotated[int | None, Query(ge=1, description="as it was at this log position")] = None,
) -> RolloutProgressOut:
    """One rollout's progress: now (from the projection) or in the past (folded from the events)."""
    if as_of is not None and at_position is not None:
        raise InvalidInput("give as_of or at_position, not both")
    if as_of is None and at_position is None:
        return RolloutProgressOut.of(*current_progress(context.container, rollout_id)[0])
    at_time = as_of.replace(tzinfo=UTC) if as_of is not None and as_of.tzinfo is None else as_of
    return RolloutProgressOut.of(*progress_as_of(context.container.store, rollout_id, at_time=at_time,
                                                 at_position=at_position, now=context.container.clock.now()))


@router.get("/{rollout_id}/agents/{agent}")
def agent_progress(rollout_id: UUID, agent: str, context: Context, _: Viewer) -> AgentProgressOut:
    """One agent's upgrade within a rollout."""
    agents = current_progress(context.container, rollout_id)[0][1]
    row = next((a for a in agents if a["agent"] == agent), None)
    if row is None:
        raise NotFound(f"agent {agent!r} is not part of rollout {rollout_id}")
    return AgentProgressOut(**row)
