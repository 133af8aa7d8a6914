"""The rows a projection runner folds events into: cached in memory, read through to SQL, written in bulk.

Rows live in two generations per table: a row read or written goes to the young one; after a flush, once
the young generation holds half of ``max_rows``, the old one is dropped and the young one becomes old.
Rows used again and again stay, rows of finished work leave, and memory stays bounded whatever the
length of the log. A dropped row is read again from SQL when it is needed.

On a rebuild the tables start empty, so a row is in SQL only if this cache wrote it and later dropped it;
``_MaybeDropped`` remembers those keys (a Bloom filter of fixed size), and every other key that is not
cached is known to have no row, without a query.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cache
from operator import itemgetter
from typing import Any

import sqlalchemy as sa

from dma_upgrade.adapters.sql.read_models import from_sql, sql_table, table_writer
from dma_upgrade.projections.tables import Key, Row, TableSpec

_UNKNOWN: Any = object()
"""Not cached: the row may or may not exist in SQL."""


class _MaybeDropped:
    """Keys of rows dropped from the cache, as a Bloom filter: no false negatives, few false positives."""

    _BITS = 1 << 23  # 1 MiB: about 1 % false positives with a million keys

    def __init__(self) -> None:
        self._bits = bytearray(self._BITS // 8)

    def _places(self, key: tuple[str, Key]) -> tuple[int, int, int]:
        digest = hash(key)
        mask = self._BITS - 1
        return digest & mask, (digest >> 21) & mask, (digest >> 42) & mask

    def add(self, key: tuple[str, Key]) -> None:
        for place in self._places(key):
            self._bits[place >> 3] |= 1 << (place & 7)

    def __contains__(self, key: tuple[str, Key]) -> bool:
        return all(self._bits[place >> 3] & (1 << (place & 7)) for place in self._places(key))


def _single_key(column: str) -> Callable[[Row], Key]:
    def key_of(row: Row) -> Key:
        return (row[column],)
    return key_of


@cache
def _select_by_key(spec: TableSpec) -> sa.Select[Any]:
    """The select of a table's row by key (built once: it is reused by every batch)."""
    sql = sql_table(spec)
    return sa.select(sql).where(*(sql.c[column] == sa.bindparam(f"k_{column}") for column in spec.key))


class _Table:
    """One table's cached rows (a cached None is a row known not to exist) and its changes since the flush."""

    def __init__(self, spec: TableSpec, dialect: sa.Dialect) -> None:
        self.spec = spec
        self.columns = frozenset(spec.column_names)
        self.width = len(self.columns)
        self.key_of: Callable[[Row], Key] = _single_key(spec.key[0]) if len(spec.key) == 1 else itemgetter(*spec.key)
        self.young: dict[Key, Row | None] = {}
        self.old: dict[Key, Row | None] = {}
        self.dirty: dict[Key, Row | None] = {}
        self.select = _select_by_key(spec)
        self.writer = table_writer(spec, dialect)

    def key_params(self, key: Key) -> dict[str, Any]:
        return {f"k_{column}": value for column, value in zip(self.spec.key, key, strict=True)}


class SqlRows:
    """``RowAccess`` for one projection: cached rows, read from SQL when missing, written by ``flush``.

    ``get`` gives the cached row itself, not a copy (a fold gets and puts rows over a million times): a
    projection changes a row it got only to ``put`` it, as ``RowAccess`` asks.
    """

    def __init__(self, specs: Sequence[TableSpec], dialect: sa.Dialect, *, empty: bool, max_rows: int) -> None:
        self._tables = {spec.name: _Table(spec, dialect) for spec in specs}
        self._dropped = _MaybeDropped() if empty else None
        self._max_rows = max_rows
        self._connection: Callable[[], sa.Connection] | None = None

    def read_with(self, connection: Callable[[], sa.Connection] | None) -> None:
        """Read missing rows through the connection this gives (None: no row may be read now)."""
        self._connection = connection

    def get(self, table: str, key: Key) -> Row | None:
        cached = self._tables[table]
        row: Row | None = cached.young.get(key, _UNKNOWN)
        if row is _UNKNOWN:
            row = cached.old.pop(key, _UNKNOWN)
            if row is _UNKNOWN:
                row = self._load(table, cached, key)
            cached.young[key] = row
        return row

    def put(self, table: str, row: Row) -> None:
        cached = self._tables[table]
        key = cached.key_of(row)
        if cached.young.get(key) is not row:  # a row of the cache, as ``get`` gave it, is stored as it is
            if len(row) == cached.width and cached.columns.issuperset(row):
                row = row.copy()
            else:
                row = {name: row.get(name) for name in cached.spec.column_names}
        cached.young[key] = row
        cached.dirty[key] = row

    def delete(self, table: str, key: Key) -> None:
        cached = self._tables[table]
        cached.young[key] = None
        cached.dirty[key] = None

    def _load(self, table: str, cached: _Table, key: Key) -> Row | None:
        if self._dropped is not None and (table, key) not in self._dropped:
            return None
        assert self._connection is not None, "rows are read only while a batch is folded"
        found = self._connection().execute(cached.select, cached.key_params(key)).first()
        return from_sql(cached.spec, found) if found is not None else None

    def flush(self, conn: sa.Connection) -> None:
        """Write every row changed since the last flush: upserts and deletes in bulk per table."""
        for cached in self._tables.values():
            writer = cached.writer
            deletes = [key for key, row in cached.dirty.items() if row is None]
            upserts = [writer.values(row) for row in cached.dirty.values() if row is not None]
            if deletes:
                conn.exec_driver_sql(writer.delete, deletes)
            if upserts:
                conn.exec_driver_sql(writer.upsert, upserts)

    def flushed(self) -> None:
        """The flush is committed: forget the changes, and drop the old generation where the young one is full."""
        for name, cached in self._tables.items():
            cached.dirty = {}
            if len(cached.young) >= self._max_rows // 2:
                if self._dropped is not None:
                    for key, row in cached.old.items():
                        if row is not None:
                            self._dropped.add((name, key))
                cached.old, cached.young = cached.young, {}
