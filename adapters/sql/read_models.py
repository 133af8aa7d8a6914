"""SQL tables of the read models, built from the projections' ``TableSpec``s, and their checkpoints."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from adapters.sql.schema import metadata
from projections.tables import ColumnType, Row, TableSpec

_SQL_TYPES: dict[ColumnType, Any] = {
    ColumnType.TEXT: sa.Text(), ColumnType.INT: sa.BigInteger(), ColumnType.FLOAT: sa.Float(),
    ColumnType.BOOL: sa.Boolean(), ColumnType.TIMESTAMP: sa.DateTime(timezone=True), ColumnType.JSON: sa.Text(),
}

checkpoints = sa.Table(
    "projection_checkpoints", metadata,
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("position", sa.BigInteger(), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("error", sa.Text(), nullable=True),
    sa.Column("error_position", sa.BigInteger(), nullable=True),
)


def sql_columns(spec: TableSpec) -> list[sa.Column[Any]]:
    """The SQL columns of one read-model table (key columns form the primary key)."""
    return [sa.Column(name, _SQL_TYPES[kind], primary_key=name in spec.key, nullable=name not in spec.key)
            for name, kind in spec.columns]


def sql_table(spec: TableSpec) -> sa.Table:
    """The SQLAlchemy table of a spec, registered once in the shared metadata."""
    existing = metadata.tables.get(spec.name)
    return existing if existing is not None else sa.Table(spec.name, metadata, *sql_columns(spec))


def to_sql(spec: TableSpec, row: Row) -> dict[str, Any]:
    """A row as SQL parameters (JSON columns as canonical text)."""
    kinds = dict(spec.columns)
    return {name: (json.dumps(row.get(name), sort_keys=True, separators=(",", ":"))
                   if kinds[name] is ColumnType.JSON and row.get(name) is not None else row.get(name))
            for name in spec.column_names}


def from_sql(spec: TableSpec, values: sa.Row[Any] | dict[str, Any]) -> Row:
    """A row read from SQL as the projection wrote it (JSON parsed, timestamps in UTC)."""
    mapping = values._mapping if isinstance(values, sa.Row) else values
    row: Row = {}
    for name, kind in spec.columns:
        value = mapping[name]
        if value is not None and kind is ColumnType.JSON:
            value = json.loads(value)
        elif isinstance(value, datetime) and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        row[name] = value
    return row
