"""``/api/v1/upgrade-path``: the upgrade-path advisor."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from dma_upgrade.adapters.api.context import Context, Viewer
from dma_upgrade.adapters.api.errors import ERROR_RESPONSES
from dma_upgrade.adapters.shapes.paths import PathOut
from dma_upgrade.engine.path_advice import PathQuery

router = APIRouter(prefix="/api/v1/upgrade-path", tags=["rollouts"], responses=ERROR_RESPONSES)


@router.get("")
def upgrade_path(context: Context, _: Viewer,
                 to: Annotated[str, Query(max_length=100, description="the version to reach")],
                 source: Annotated[str | None, Query(alias="from", max_length=100,
                                                     description="the version to start from")] = None,
                 agent: Annotated[str | None, Query(max_length=200, description="start from this agent")] = None,
                 cluster: Annotated[str | None, Query(max_length=200,
                                                      description="start from every agent of this cluster")] = None,
                 ) -> list[PathOut]:
    """The chain of versions to install to reach ``to``, one per distinct current version (exactly one of
    ``from``, ``agent`` or ``cluster``), marking the uploaded packages that cover each hop."""
    query = PathQuery(target=to, source=source, agent=agent, cluster=cluster)
    return [PathOut.of(advice) for advice in context.service.upgrade_path(query)]
