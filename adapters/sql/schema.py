"""SQLAlchemy Core tables of the event store (created only through the Alembic migrations)."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

Position = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

events = sa.Table(
    "events",
    metadata,
    sa.Column("position", Position, primary_key=True, autoincrement=False),
    sa.Column("event_id", sa.Uuid(), nullable=False),
    sa.Column("stream_id", sa.String(200), nullable=False),
    sa.Column("stream_version", sa.Integer(), nullable=False),
    sa.Column("event_type", sa.String(100), nullable=False),
    sa.Column("schema_version", sa.SmallInteger(), nullable=False),
    sa.Column("payload", sa.Text(), nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("correlation_id", sa.Uuid(), nullable=True),
    sa.Column("causation_id", sa.Uuid(), nullable=True),
    sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.UniqueConstraint("event_id", name="uq_events_event_id"),
    sa.UniqueConstraint("stream_id", "stream_version", name="uq_events_stream_version"),
    sa.Index("ix_events_correlation_id", "correlation_id"),
    sa.Index("ix_events_recorded_at", "recorded_at"),
)

leases = sa.Table(
    "leases",
    metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("rollout_id", sa.String(36), nullable=True),
    sa.Column("owner", sa.String(200), nullable=True),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("token", sa.BigInteger(), nullable=False, server_default="0"),
)
"""Who drives what: a row per active rollout, handed-out agent upgrade and role, with its holder and expiry.

Not domain state (that is only ever the events): a lost row costs a wait, never a wrong decision."""
