"""Progress: whether the step in flight is in doubt, which manual start a switch-over waits for, and the plan's notes.

It resets the progress projection (replayed from the start on its next catch-up): run it with every engine
process stopped (docs/operations.md, upgrading the engine).

Revision ID: 0008_progress_doubt_notes
Revises: 0007_leases
Create Date: 2026-12-01
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_progress_doubt_notes"
down_revision = "0007_leases"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("progress_agents") as batch:
        batch.add_column(sa.Column("in_doubt", sa.Boolean(), nullable=True))
        batch.add_column(sa.Column("awaiting_manual_start", sa.Text(), nullable=True))
        batch.add_column(sa.Column("notes", sa.Text(), nullable=True))
    with op.batch_alter_table("progress_rollouts") as batch:
        batch.add_column(sa.Column("notes", sa.Text(), nullable=True))
    # The progress projection is replayed from the start on its next catch-up, filling the new columns.
    op.execute("DELETE FROM projection_checkpoints WHERE name = 'progress'")
    op.execute("DELETE FROM progress_agents")
    op.execute("DELETE FROM progress_rollouts")


def downgrade() -> None:
    with op.batch_alter_table("progress_rollouts") as batch:
        batch.drop_column("notes")
    with op.batch_alter_table("progress_agents") as batch:
        batch.drop_column("notes")
        batch.drop_column("awaiting_manual_start")
        batch.drop_column("in_doubt")
