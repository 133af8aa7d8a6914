"""Every projection the product maintains."""

from __future__ import annotations

from dma_upgrade.projections.base import Projection
from dma_upgrade.projections.inventory import InventoryProjection
from dma_upgrade.projections.package_history import PackageHistoryProjection
from dma_upgrade.projections.progress import ProgressProjection
from dma_upgrade.projections.timers import PendingTimersProjection


def all_projections() -> list[Projection]:
    """A fresh instance of every projection, in the order they are run."""
    return [ProgressProjection(), PackageHistoryProjection(), InventoryProjection(), PendingTimersProjection()]
