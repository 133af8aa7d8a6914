"""Leases: which engine process owns which rollout, agent upgrade or role, until when.

Revision ID: 0007_leases
Revises: 0006_progress_step_attempt
Create Date: 2026-11-30
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_leases"
down_revision = "0006_progress_step_attempt"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "leases",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("rollout_id", sa.String(36), nullable=True),
        sa.Column("owner", sa.String(200), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("token", sa.BigInteger(), nullable=False, server_default="0"),
    )
    op.create_index("ix_leases_kind_expires_at", "leases", ["kind", "expires_at"])
    op.create_index("ix_leases_rollout_id", "leases", ["rollout_id"])
    op.create_index("ix_leases_owner", "leases", ["owner"])


def downgrade() -> None:
    op.drop_table("leases")
