"""Reading the upgrade history: every package ever uploaded, and each agent's VersionHistory.txt.

Reads only: the package history tables as they are, each answer with how far behind they are."""

from __future__ import annotations

from dma_upgrade.adapters.read.freshness import Reading, ReadSide, behind, checkpoint, lag_since
from dma_upgrade.adapters.sql.projection_runner import read_rows
from dma_upgrade.engine.errors import NotFound
from dma_upgrade.projections.package_history import PACKAGES, VERSION_HISTORY, PackageHistoryProjection
from dma_upgrade.projections.tables import Row

PACKAGE_HISTORY = PackageHistoryProjection.name


def package_history(side: ReadSide) -> Reading[list[Row]]:
    """Every package ever uploaded, oldest first, from the package history projection as it is."""
    position = checkpoint(side, PACKAGE_HISTORY)
    rows = sorted(read_rows(side.engine, PACKAGES), key=lambda r: r["uploaded_at"])
    return Reading(rows, lag_since(side, PACKAGE_HISTORY, position))


def version_history(side: ReadSide, agent: str) -> Reading[list[Row]]:
    """Every version ``agent`` ran, oldest first; ``NotFound`` for an agent without a history (yet)."""
    position = checkpoint(side, PACKAGE_HISTORY)
    rows = read_rows(side.engine, VERSION_HISTORY, agent=agent)
    lag = lag_since(side, PACKAGE_HISTORY, position)
    if not rows:
        raise NotFound(f"unknown agent {agent!r}" + behind(lag))
    return Reading(sorted(rows, key=lambda r: r["seq"]), lag)
