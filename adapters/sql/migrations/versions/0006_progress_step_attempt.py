"""Progress: the attempt number of the step in flight, and each rollout's upgrade ids (to cancel unstarted ones).

Revision ID: 0006_progress_step_attempt
Revises: 0005_fleet_gauge_indexes
Create Date: 2026-11-30
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_progress_step_attempt"
down_revision = "0005_fleet_gauge_indexes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("progress_agents") as batch:
        batch.add_column(sa.Column("step_attempt", sa.BigInteger(), nullable=True))
    with op.batch_alter_table("progress_rollouts") as batch:
        batch.add_column(sa.Column("upgrade_ids", sa.Text(), nullable=True))
    # The progress projection is replayed from the start on its next catch-up, filling the new columns.
    op.execute("DELETE FROM projection_checkpoints WHERE name = 'progress'")
    op.execute("DELETE FROM progress_agents")
    op.execute("DELETE FROM progress_rollouts")


def downgrade() -> None:
    with op.batch_alter_table("progress_rollouts") as batch:
        batch.drop_column("upgrade_ids")
    with op.batch_alter_table("progress_agents") as batch:
        batch.drop_column("step_attempt")
