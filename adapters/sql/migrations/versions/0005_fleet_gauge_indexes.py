"""Indexes the fleet gauges of /metrics scan instead of the wide rows: upgrades by state, agents by version.

Revision ID: 0005_fleet_gauge_indexes
Revises: 0004_progress_resumes
Create Date: 2026-11-30
"""
from __future__ import annotations

from alembic import op

revision = "0005_fleet_gauge_indexes"
down_revision = "0004_progress_resumes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_progress_agents_state_since", "progress_agents", ["state", "state_since"])
    op.create_index("ix_agent_inventory_version", "agent_inventory", ["version", "stopped_by_upgrade"])
    op.create_index("ix_pending_timers_kind_due", "pending_timers", ["kind", "due_at"])


def downgrade() -> None:
    op.drop_index("ix_pending_timers_kind_due", "pending_timers")
    op.drop_index("ix_agent_inventory_version", "agent_inventory")
    op.drop_index("ix_progress_agents_state_since", "progress_agents")
