"""Migration 0011 resets the inventory projection, whose ``cluster_versions`` rows are now keyed by parsed version:
the rows keyed by notation are gone, and the catch-up rebuilds them with one row per version."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from dma_upgrade.adapters.sql.database import create_db_engine, migrate


def test_the_inventory_is_reset_and_nothing_else(tmp_path: Path) -> None:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'store.db'}")
    migrate(engine, "0010_package_acceptance")
    metadata = sa.MetaData()
    metadata.reflect(engine, only=["cluster_versions", "projection_checkpoints"])
    versions, checkpoints = metadata.tables["cluster_versions"], metadata.tables["projection_checkpoints"]
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(versions.insert(), [{"cluster": "north", "version": "10.4.0.0-14112", "agents": 1},
                                         {"cluster": "north", "version": "10.4.0.0(CU0)-14112", "agents": 1}])
        conn.execute(checkpoints.insert(), [{"name": "inventory", "position": 7, "updated_at": now},
                                            {"name": "progress", "position": 7, "updated_at": now}])

    migrate(engine)

    with engine.connect() as conn:
        assert conn.execute(sa.select(versions)).all() == []
        assert [row.name for row in conn.execute(sa.select(checkpoints))] == ["progress"]
    engine.dispose()
