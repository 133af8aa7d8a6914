"""Progress: a rollout's scheduled start (``start_at``) and how late it started (``start_lateness_seconds``).

It resets the progress projection (replayed from the start on its next catch-up): run it with every engine
process stopped (docs/operations.md, upgrading the engine). The release also records ``scheduled_at`` and
``started_at`` on ``RolloutStarted``, which older processes cannot read: start the new ones together.

Revision ID: 0009_progress_start_lateness
Revises: 0008_progress_doubt_notes
Create Date: 2026-12-04
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_progress_start_lateness"
down_revision = "0008_progress_doubt_notes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("progress_rollouts") as batch:
        batch.add_column(sa.Column("start_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("start_lateness_seconds", sa.Float(), nullable=True))
    # The progress projection is replayed from the start on its next catch-up, filling the new columns.
    op.execute("DELETE FROM projection_checkpoints WHERE name = 'progress'")
    op.execute("DELETE FROM progress_agents")
    op.execute("DELETE FROM progress_rollouts")


def downgrade() -> None:
    with op.batch_alter_table("progress_rollouts") as batch:
        batch.drop_column("start_lateness_seconds")
        batch.drop_column("start_at")
