"""``/api/v1/whoami``: the caller a token stands for (the pages shape themselves by its role)."""

from __future__ import annotations

from fastapi import APIRouter

from dma_upgrade.adapters.api.context import Viewer
from dma_upgrade.adapters.api.errors import ERROR_RESPONSES
from dma_upgrade.adapters.api.view_models import CallerOut

router = APIRouter(prefix="/api/v1/whoami", tags=["tokens"], responses=ERROR_RESPONSES)


@router.get("")
def whoami(caller: Viewer) -> CallerOut:
    """The token's name and role."""
    return CallerOut.of(caller)
