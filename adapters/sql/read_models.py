"""SQL tables of the read models, built from the projections' ``TableSpec``s, and their checkpoints."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from functools import cache
from operator import itemgetter
from typing import Any

import sqlalchemy as sa

from dma_upgrade.adapters.sql.schema import metadata
from dma_upgrade.projections.tables import ColumnType, Row, TableSpec

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


class TableWriter:
    """Bulk writes of one read-model table as plain SQL through the driver: rows upserted, rows deleted by key.

    Values are converted as SQLAlchemy would bind them (SQLite: timestamps as its text; JSON as canonical text).
    """

    def __init__(self, spec: TableSpec, dialect: sa.Dialect) -> None:
        quote = dialect.identifier_preparer.quote
        mark = "?" if dialect.paramstyle == "qmark" else "%s"
        names = spec.column_names
        updates = ", ".join(f"{quote(name)} = excluded.{quote(name)}" for name in names if name not in spec.key)
        self.upsert = (f"INSERT INTO {quote(spec.name)} ({', '.join(map(quote, names))}) "
                       f"VALUES ({', '.join(mark for _ in names)}) "
                       f"ON CONFLICT ({', '.join(map(quote, spec.key))}) DO UPDATE SET {updates}")
        self.delete = (f"DELETE FROM {quote(spec.name)} WHERE "
                       + " AND ".join(f"{quote(name)} = {mark}" for name in spec.key))
        self._in_order = itemgetter(*names)
        kinds = dict(spec.columns)
        self._json = [i for i, name in enumerate(names) if kinds[name] is ColumnType.JSON]
        self._text_times = ([i for i, name in enumerate(names) if kinds[name] is ColumnType.TIMESTAMP]
                            if dialect.name == "sqlite" else [])

    def values(self, row: Row) -> tuple[Any, ...]:
        """A row's parameters for ``upsert``, in column order."""
        values = list(self._in_order(row))
        for index in self._json:
            if values[index] is not None:
                values[index] = _JSON.encode(values[index])
        for index in self._text_times:
            if values[index] is not None:
                values[index] = sqlite_time(values[index])
        return tuple(values)


@cache
def table_writer(spec: TableSpec, dialect: sa.Dialect) -> TableWriter:
    """The writer of a table for a dialect (built once)."""
    return TableWriter(spec, dialect)


def sqlite_time(value: datetime) -> str:
    """A timestamp as SQLAlchemy stores it in SQLite: its fields as ISO 8601 text, without an offset."""
    return value.isoformat(" ", "microseconds")[:26]


_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"))
"""JSON columns as canonical text (one encoder: ``json.dumps`` with these options would build one per value)."""


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


def checkpoint_position(engine: sa.Engine, name: str) -> int:
    """The position of the last event projection ``name`` applied (0 before its first)."""
    with engine.connect() as conn:
        position = conn.execute(sa.select(checkpoints.c.position).where(checkpoints.c.name == name)).scalar()
    return int(position or 0)
