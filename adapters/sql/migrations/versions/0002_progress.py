"""Projection checkpoints and the progress read model.

Revision ID: 0002_progress
Revises: 0001_events
Create Date: 2026-11-30
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_progress"
down_revision = "0001_events"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "projection_checkpoints",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("error_position", sa.BigInteger(), nullable=True),
    )
    op.create_table(
        "progress_rollouts",
        sa.Column("rollout_id", sa.Text(), primary_key=True),
        sa.Column("package_version", sa.Text(), nullable=True),
        sa.Column("failover_policy", sa.Text(), nullable=True),
        sa.Column("state", sa.Text(), nullable=True),
        sa.Column("upload_only", sa.Boolean(), nullable=True),
        sa.Column("agents_total", sa.BigInteger(), nullable=True),
        sa.Column("waiting", sa.BigInteger(), nullable=True),
        sa.Column("in_flight", sa.BigInteger(), nullable=True),
        sa.Column("completed", sa.BigInteger(), nullable=True),
        sa.Column("failed", sa.BigInteger(), nullable=True),
        sa.Column("cancelled", sa.BigInteger(), nullable=True),
        sa.Column("warnings", sa.Text(), nullable=True),
        sa.Column("planned_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("end_reason", sa.Text(), nullable=True),
        sa.Column("planned_by", sa.Text(), nullable=True),
        sa.Column("last_position", sa.BigInteger(), nullable=True),
    )
    op.create_table(
        "progress_agents",
        sa.Column("upgrade_id", sa.Text(), primary_key=True),
        sa.Column("rollout_id", sa.Text(), nullable=True),
        sa.Column("agent", sa.Text(), nullable=True),
        sa.Column("plan_order", sa.BigInteger(), nullable=True),
        sa.Column("failover_role", sa.Text(), nullable=True),
        sa.Column("state", sa.Text(), nullable=True),
        sa.Column("step", sa.Text(), nullable=True),
        sa.Column("phase", sa.Text(), nullable=True),
        sa.Column("steps_done", sa.BigInteger(), nullable=True),
        sa.Column("steps_planned", sa.BigInteger(), nullable=True),
        sa.Column("attempts", sa.BigInteger(), nullable=True),
        sa.Column("retries", sa.BigInteger(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("state_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("durations", sa.Text(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("manual_start_needed", sa.Boolean(), nullable=True),
        sa.Column("version_from", sa.Text(), nullable=True),
        sa.Column("version_after", sa.Text(), nullable=True),
        sa.Column("waiting_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_position", sa.BigInteger(), nullable=True),
    )
    op.create_index("ix_progress_agents_rollout_id", "progress_agents", ["rollout_id"])


def downgrade() -> None:
    op.drop_table("progress_agents")
    op.drop_table("progress_rollouts")
    op.drop_table("projection_checkpoints")
