"""Read models: package history, agent version history, agent inventory, cluster versions, pending timers.

Revision ID: 0003_read_models
Revises: 0002_progress
Create Date: 2026-11-30
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_read_models"
down_revision = "0002_progress"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "package_history",
        sa.Column("sha256", sa.Text(), primary_key=True),
        sa.Column("file_name", sa.Text(), nullable=True),
        sa.Column("version", sa.Text(), nullable=True),
        sa.Column("cu", sa.BigInteger(), nullable=True),
        sa.Column("kind", sa.Text(), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("uploaded_by", sa.Text(), nullable=True),
        sa.Column("uploaded_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", sa.Text(), nullable=True),
        sa.Column("rollouts", sa.Text(), nullable=True),
    )
    op.create_table(
        "package_rollouts",
        sa.Column("rollout_id", sa.Text(), primary_key=True),
        sa.Column("sha256", sa.Text(), nullable=True),
        sa.Column("upload_only", sa.Boolean(), nullable=True),
    )
    op.create_table(
        "agent_version_history",
        sa.Column("agent", sa.Text(), primary_key=True),
        sa.Column("seq", sa.BigInteger(), primary_key=True),
        sa.Column("version", sa.Text(), nullable=True),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("upgrade_id", sa.Text(), nullable=True),
    )
    op.create_table(
        "agent_version_heads",
        sa.Column("agent", sa.Text(), primary_key=True),
        sa.Column("last_seq", sa.BigInteger(), nullable=True),
    )
    op.create_table(
        "agent_inventory",
        sa.Column("agent", sa.Text(), primary_key=True),
        sa.Column("address", sa.Text(), nullable=True),
        sa.Column("cluster", sa.Text(), nullable=True),
        sa.Column("version", sa.Text(), nullable=True),
        sa.Column("dataminer_id", sa.BigInteger(), nullable=True),
        sa.Column("failover_partner", sa.Text(), nullable=True),
        sa.Column("failover_role", sa.Text(), nullable=True),
        sa.Column("os", sa.Text(), nullable=True),
        sa.Column("stopped_by_upgrade", sa.Text(), nullable=True),
        sa.Column("registered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("version_changed_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_table(
        "cluster_versions",
        sa.Column("cluster", sa.Text(), primary_key=True),
        sa.Column("version", sa.Text(), primary_key=True),
        sa.Column("agents", sa.BigInteger(), nullable=True),
    )
    op.create_table(
        "pending_timers",
        sa.Column("timer_id", sa.Text(), primary_key=True),
        sa.Column("kind", sa.Text(), nullable=True),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("stream_id", sa.Text(), nullable=True),
        sa.Column("step", sa.Text(), nullable=True),
        sa.Column("armed_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_pending_timers_due_at", "pending_timers", ["due_at"])
    op.create_table(
        "pending_timer_streams",
        sa.Column("stream_id", sa.Text(), primary_key=True),
        sa.Column("timer_id", sa.Text(), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("pending_timer_streams")
    op.drop_index("ix_pending_timers_due_at", table_name="pending_timers")
    op.drop_table("pending_timers")
    op.drop_table("cluster_versions")
    op.drop_table("agent_inventory")
    op.drop_table("agent_version_heads")
    op.drop_table("agent_version_history")
    op.drop_table("package_rollouts")
    op.drop_table("package_history")
