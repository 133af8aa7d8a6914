"""``/api/v1/progress``: the Progress tab, now or as it was at a time or a position."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query
from fastapi.responses import Response

from dma_upgrade.adapters.api.context import Context, Viewer
from dma_upgrade.adapters.api.errors import ERROR_RESPONSES
from dma_upgrade.adapters.read.freshness import Lag
from dma_upgrade.adapters.read.progress_queries import progress_as_of
from dma_upgrade.adapters.shapes.models import AgentProgressOut, RolloutProgressOut, as_utc
from dma_upgrade.engine.errors import InvalidInput

router = APIRouter(prefix="/api/v1/progress", tags=["progress"], responses=ERROR_RESPONSES)


def _json(body: bytes, lag: Lag | None = None) -> Response:
    """A JSON answer; one read from the projection carries its lag as headers (``Lag.headers``)."""
    return Response(body, media_type="application/json", headers=lag.headers() if lag is not None else None)


@router.get("", response_model=list[RolloutProgressOut])
def all_progress(context: Context, _: Viewer) -> Response:
    """Every rollout, oldest first, with a row per agent."""
    return _json(*context.progress.all_json())


@router.get("/{rollout_id}", response_model=RolloutProgressOut)
def rollout_progress(
        rollout_id: UUID, context: Context, _: Viewer,
        as_of: Annotated[datetime | None, Query(description="as it was at this time (UTC when no zone)")] = None,
        at_position: Annotated[int | None, Query(ge=1, description="as it was at this log position")] = None,
) -> Response:
    """One rollout's progress: now (from the projection) or in the past (folded from the events)."""
    if as_of is not None and at_position is not None:
        raise InvalidInput("give as_of or at_position, not both")
    if as_of is None and at_position is None:
        return _json(*context.progress.rollout_json(rollout_id))
    past = RolloutProgressOut.of(*progress_as_of(context.app.store, rollout_id, at_time=as_utc(as_of),
                                                 at_position=at_position, now=context.app.clock.now()))
    return _json(past.model_dump_json().encode())


@router.get("/{rollout_id}/agents/{agent}")
def agent_progress(rollout_id: UUID, agent: str, context: Context, _: Viewer,
                   response: Response) -> AgentProgressOut:
    """One agent's upgrade within a rollout."""
    answer, lag = context.progress.agent(rollout_id, agent)
    response.headers.update(lag.headers())
    return answer
