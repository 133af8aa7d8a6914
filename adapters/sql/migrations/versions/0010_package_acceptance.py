"""Package history: which systems accepted each package on upload (``clusters``, prerequisites judged per cluster).

It resets the package history projection (replayed from the start on its next catch-up, filling the new column
from ``PackageUploaded.clusters``): run it with every engine process stopped (docs/operations.md, upgrading the
engine).

Revision ID: 0010_package_acceptance
Revises: 0009_progress_start_lateness
Create Date: 2026-12-05
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_package_acceptance"
down_revision = "0009_progress_start_lateness"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("package_history") as batch:
        batch.add_column(sa.Column("clusters", sa.Text(), nullable=True))
    op.execute("DELETE FROM projection_checkpoints WHERE name = 'package_history'")
    for table in ("package_history", "package_rollouts", "agent_version_history", "agent_version_heads"):
        op.execute(f"DELETE FROM {table}")


def downgrade() -> None:
    with op.batch_alter_table("package_history") as batch:
        batch.drop_column("clusters")
