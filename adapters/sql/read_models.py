"""SQL tables of the read models, built from the projections' ``TableSpec``s, and their checkpoints."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

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


def upsert(spec: TableSpec, dialect: str) -> sa.Insert:
    """An insert of a row that replaces the row with the same key (for an executemany of rows)."""
    insert = (sqlite.insert if dialect == "sqlite" else postgresql.insert)(sql_table(spec))
    others = {name: insert.excluded[name] for name in spec.column_names if name not in spec.key}
    return insert.on_conflict_do_update(index_elements=list(spec.key), set_=others)


def json_text(value: Any) -> str | None:
    """A JSON column's value as canonical text (None stays NULL)."""
    return None if value is None else json.dumps(value, sort_keys=True, separators=(",", ":"))


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
