"""Every projection the product maintains."""

from __future__ import annotations

from projections.base import Projection
from projections.inventory import InventoryProjection
from projections.package_history import PackageHistoryProjection
from projections.progress import ProgressProjection
from projections.timers import PendingTimersProjection


def all_projections() -> list[Projection]:
    """A fresh instance of every projection, in the order they are run."""
    return [ProgressProjection(), PackageHistoryProjection(), InventoryProjection(), PendingTimersProjection()]
