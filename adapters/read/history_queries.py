"""Reading the upgrade history: every package ever uploaded, and each agent's VersionHistory.txt."""

from __future__ import annotations

from dma_upgrade.adapters.bootstrap import Container
from dma_upgrade.adapters.sql.projection_runner import read_rows
from dma_upgrade.engine.errors import NotFound
from dma_upgrade.projections.package_history import PACKAGES, VERSION_HISTORY
from dma_upgrade.projections.tables import Row


def package_history(container: Container) -> list[Row]:
    """Every package ever uploaded, oldest first, from the package history projection brought up to date."""
    container.projections.catch_up(["package_history"])
    return sorted(read_rows(container.engine, PACKAGES), key=lambda r: r["uploaded_at"])


def version_history(container: Container, agent: str) -> list[Row]:
    """Every version ``agent`` ran, oldest first; ``NotFound`` for an agent without a history."""
    container.projections.catch_up(["package_history"])
    rows = read_rows(container.engine, VERSION_HISTORY, agent=agent)
    if not rows:
        raise NotFound(f"unknown agent {agent!r}")
    return sorted(rows, key=lambda r: r["seq"])
