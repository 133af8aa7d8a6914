"""Inventory: ``cluster_versions`` counts agents per parsed version (``engine.versions.version_identity``), so two
notations of one version (``10.4.0.0-14112``, ``10.4.0.0(CU0)-14112``) are one row.

It resets the inventory projection (replayed from the start on its next catch-up): run it with every engine
process stopped (docs/operations.md, upgrading the engine).

Revision ID: 0011_version_identity
Revises: 0010_package_acceptance
Create Date: 2026-12-05
"""
from __future__ import annotations

from alembic import op

revision = "0011_version_identity"
down_revision = "0010_package_acceptance"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The inventory projection is replayed from the start on its next catch-up, keying versions anew.
    op.execute("DELETE FROM projection_checkpoints WHERE name = 'inventory'")
    op.execute("DELETE FROM cluster_versions")
    op.execute("DELETE FROM agent_inventory")


def downgrade() -> None:
    # Rows keyed by parsed versions are read by older code as they are; replaying restores its own keys.
    op.execute("DELETE FROM projection_checkpoints WHERE name = 'inventory'")
    op.execute("DELETE FROM cluster_versions")
    op.execute("DELETE FROM agent_inventory")
