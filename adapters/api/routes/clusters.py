"""``/api/v1/clusters``: the DataMiner Systems and the versions their agents run."""

from __future__ import annotations

from fastapi import APIRouter

from dma_upgrade.adapters.api.context import Context, Viewer
from dma_upgrade.adapters.api.errors import ERROR_RESPONSES
from dma_upgrade.adapters.api.view_models import ClusterOut

router = APIRouter(prefix="/api/v1/clusters", tags=["agents"], responses=ERROR_RESPONSES)


@router.get("")
def list_clusters(context: Context, _: Viewer) -> list[ClusterOut]:
    """Every cluster (then each agent in no cluster) with its agents and their versions, parsed; ``mixed`` when
    its agents run different versions."""
    return ClusterOut.all_of(context.service.agents())
