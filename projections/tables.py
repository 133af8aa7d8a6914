"""Read-model tables described as data, and the row-access port projections write through.

Projections stay free of I/O: they read and write rows (plain dicts) through ``RowAccess``;
adapters map the ``TableSpec``s to SQL tables, and ``MemoryRows`` keeps them in dicts for time travel.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

Row = dict[str, Any]
Key = tuple[Any, ...]


class ColumnType(StrEnum):
    """The value kinds a read-model column holds."""

    TEXT = "text"
    INT = "int"
    FLOAT = "float"
    BOOL = "bool"
    TIMESTAMP = "timestamp"
    JSON = "json"


@dataclass(frozen=True)
class TableSpec:
    """One read-model table: its name, key columns and every column with its kind."""

    name: str
    key: tuple[str, ...]
    columns: tuple[tuple[str, ColumnType], ...]

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.columns)

    def key_of(self, row: Row) -> Key:
        return tuple(row[column] for column in self.key)


class RowAccess(Protocol):
    """Rows of read-model tables, by key; what a projection reads and writes while handling an event."""

    def get(self, table: str, key: Key) -> Row | None:
        """The row with ``key``, or None. The returned dict may be changed, and then must be passed to ``put``
        before the event is handled (it may be the stored row itself: a change not put may be lost or not)."""
        ...

    def put(self, table: str, row: Row) -> None:
        """Insert or replace the row (its key is read from the row)."""
        ...

    def delete(self, table: str, key: Key) -> None:
        """Remove the row with ``key`` if it exists."""
        ...


class MemoryRows:
    """Read-model tables in dicts: for time travel, tests, and comparing a rebuild with live tables."""

    def __init__(self, specs: tuple[TableSpec, ...]) -> None:
        self._specs = {spec.name: spec for spec in specs}
        self.tables: dict[str, dict[Key, Row]] = {spec.name: {} for spec in specs}

    def get(self, table: str, key: Key) -> Row | None:
        row = self.tables[table].get(key)
        return dict(row) if row is not None else None

    def put(self, table: str, row: Row) -> None:
        spec = self._specs[table]
        self.tables[table][spec.key_of(row)] = {name: row.get(name) for name in spec.column_names}

    def delete(self, table: str, key: Key) -> None:
        self.tables[table].pop(key, None)

    def rows(self, table: str) -> Iterator[Row]:
        """Every row of ``table`` in key order."""
        for key in sorted(self.tables[table], key=repr):
            yield self.tables[table][key]
