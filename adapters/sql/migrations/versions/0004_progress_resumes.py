"""How many times an engine resumed each agent upgrade after a restart.

Revision ID: 0004_progress_resumes
Revises: 0003_read_models
Create Date: 2026-11-30
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_progress_resumes"
down_revision = "0003_read_models"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("progress_agents") as batch:
        batch.add_column(sa.Column("resumes", sa.BigInteger(), nullable=True))
    op.execute("DELETE FROM projection_checkpoints WHERE name = 'progress'")
    op.execute("DELETE FROM progress_agents")
    op.execute("DELETE FROM progress_rollouts")


def downgrade() -> None:
    with op.batch_alter_table("progress_agents") as batch:
        batch.drop_column("resumes")
