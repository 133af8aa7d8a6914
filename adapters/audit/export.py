"""Exporting the audit trail: stored events as JSON lines or CSV, streamed in constant memory.

An export walks ``StoredRecord``s in global order (as ``EventStore.read_records`` yields them, page
by page), keeps those a ``Selection`` matches and writes each one as soon as it is read, then ends
with a trailer naming the anchor ``HASH@POSITION`` of the last exported event. Because each hash
covers every event before it, ``dma-upgrade audit verify --anchor HASH@POSITION`` later proves the
log still holds that event and everything before it, unchanged.

Shapes, one event per line, fields in the order of ``FIELDS``:

- ``jsonl``: one JSON object per event (``payload`` as a JSON object), then
  ``{"anchor": "HASH@POSITION", "exported": N}`` (``"anchor": null`` when nothing matched).
- ``csv``: a header row, one row per event (``payload`` as the stored JSON text, exactly as hashed;
  missing ids as empty cells), every cell quoted (so a carriage return in a value cannot start a row),
  then the comment line ``# anchor HASH@POSITION exported N`` (``# anchor none exported 0`` when
  nothing matched).

A spreadsheet runs a cell that begins with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return as a
formula (CSV injection), and an actor is a name anyone with a token chose. So in ``csv``, whatever the
column, such a cell gets a single quote ``'`` in front of it (the OWASP rule), and so does a cell that
already began with ``'``: **a CSV cell beginning with ``'`` was neutralised**, and dropping that one
quote gives the stored value (to recompute the hash chain, say). ``jsonl`` holds the values unchanged.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import stat
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, TextIO
from uuid import UUID

import sqlalchemy as sa

from dma_upgrade.adapters.sql.event_store import SqlEventStore
from dma_upgrade.adapters.sql.schema import events
from dma_upgrade.engine.errors import EventDecodeError, InvalidInput
from dma_upgrade.engine.events import StoredRecord
from dma_upgrade.engine.hashchain import utc_timestamp
from dma_upgrade.engine.ports import EventStore

FIELDS = ("position", "recorded_at", "actor", "stream_id", "stream_version", "event_type", "schema_version",
          "event_id", "correlation_id", "causation_id", "hash", "payload")
"""The columns of an export, in order."""

NEUTRALISED = ("=", "+", "-", "@", "\t", "\r", "'")
"""How a CSV cell that gets a ``'`` in front of it begins: a spreadsheet formula, or a quote already."""

PAGE_SIZE = 1000
"""Records fetched per read: the export holds at most one page in memory."""


class ExportFormat(StrEnum):
    """The shapes an export can take."""

    JSONL = "jsonl"
    CSV = "csv"

    @classmethod
    def parse(cls, text: str) -> ExportFormat:
        """The format named by ``text`` (case-insensitive), or ``InvalidInput``."""
        try:
            return cls(text.strip().lower())
        except ValueError:
            raise InvalidInput(f"--format must be jsonl or csv, got {text!r}") from None


def parse_time(text: str, option: str) -> datetime:
    """An ISO 8601 time or date as an aware UTC datetime; no time zone means UTC, a date means midnight."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidInput(f"{option} must be an ISO 8601 time or date such as 2026-11-30 or "
                           f"2026-11-30T09:00:00Z, got {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def parse_rollout(text: str) -> UUID:
    """A rollout id (a UUID), or ``InvalidInput``."""
    try:
        return UUID(text.strip())
    except ValueError:
        raise InvalidInput(f"--rollout must be a rollout id (a UUID), got {text!r}") from None


@dataclass(frozen=True)
class Selection:
    """Which events an export keeps: recorded in ``[start, end)`` and correlated with ``rollout``.

    A rollout's own events, its agents' upgrades and its cluster claims all carry the rollout id as
    their correlation id. ``None`` leaves that side open.
    """

    start: datetime | None = None
    end: datetime | None = None
    rollout: UUID | None = None

    def __post_init__(self) -> None:
        for moment in (self.start, self.end):
            if moment is not None and moment.tzinfo is None:
                raise ValueError("Selection times must be timezone-aware")
        if self.start is not None and self.end is not None and self.start > self.end:
            raise InvalidInput(f"--from {utc_timestamp(self.start)} is after --to {utc_timestamp(self.end)}")

    def matches(self, record: StoredRecord) -> bool:
        """Whether ``record`` belongs in the export."""
        if self.start is not None and record.recorded_at < self.start:
            return False
        if self.end is not None and record.recorded_at >= self.end:
            return False
        return self.rollout is None or record.metadata.correlation_id == self.rollout


@dataclass
class ExportSummary:
    """What an export wrote: how many events, and the last one's position and hash."""

    exported: int = 0
    last_position: int | None = None
    last_hash: str | None = None

    @property
    def anchor(self) -> str | None:
        """``HASH@POSITION`` of the last exported event, for ``audit verify --anchor`` (None if none)."""
        if self.last_hash is None or self.last_position is None:
            return None
        return f"{self.last_hash}@{self.last_position}"

    def count(self, record: StoredRecord) -> None:
        self.exported += 1
        self.last_position = record.position
        self.last_hash = record.hash


def export_row(record: StoredRecord) -> dict[str, Any]:
    """The exported fields of one record, with the payload parsed into a JSON value."""
    try:
        payload = json.loads(record.payload)
    except ValueError as error:
        raise EventDecodeError(record.position, record.event_type, f"payload is not JSON: {error}") from None
    return _fields(record, payload)


def _fields(record: StoredRecord, payload: Any) -> dict[str, Any]:
    meta = record.metadata
    return {
        "position": record.position,
        "recorded_at": utc_timestamp(record.recorded_at),
        "actor": meta.actor,
        "stream_id": record.stream_id,
        "stream_version": record.stream_version,
        "event_type": record.event_type,
        "schema_version": record.schema_version,
        "event_id": str(record.event_id),
        "correlation_id": str(meta.correlation_id) if meta.correlation_id is not None else None,
        "causation_id": str(meta.causation_id) if meta.causation_id is not None else None,
        "hash": record.hash,
        "payload": payload,
    }


def export_lines(records: Iterable[StoredRecord], export_format: ExportFormat,
                 summary: ExportSummary) -> Iterator[str]:
    """The export as lines of text, one record at a time, ending with the anchor; counts into ``summary``."""
    if export_format is ExportFormat.CSV:
        yield _csv_line(FIELDS)
        for record in records:
            row = _fields(record, record.payload)
            yield _csv_line([csv_cell(row[name]) for name in FIELDS])
            summary.count(record)
        yield f"# anchor {summary.anchor or 'none'} exported {summary.exported}\n"
        return
    for record in records:
        yield json.dumps(export_row(record), ensure_ascii=False) + "\n"
        summary.count(record)
    yield json.dumps({"anchor": summary.anchor, "exported": summary.exported}) + "\n"


def csv_cell(value: Any) -> str:
    """``value`` as the text of a CSV cell: ``None`` empty, and a ``'`` in front of what begins as ``NEUTRALISED``."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(NEUTRALISED) else text


def _csv_line(values: Iterable[Any]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n", quoting=csv.QUOTE_ALL).writerow(values)
    return buffer.getvalue()


def export_records(records: Iterable[StoredRecord], stream: TextIO, export_format: ExportFormat,
                   selection: Selection | None = None) -> ExportSummary:
    """Write the records ``selection`` matches to ``stream`` in ``export_format``, one at a time."""
    chosen = selection or Selection()
    summary = ExportSummary()
    for line in export_lines((record for record in records if chosen.matches(record)), export_format, summary):
        stream.write(line)
    return summary


def position_range(store: EventStore, selection: Selection) -> tuple[int, int] | None:
    """The first and last positions that can match ``selection``, or None when none can.

    On a SQL store this is one query on the indexed ``recorded_at`` and ``correlation_id`` columns, so
    a narrow export reads only its stretch of the log. The bounds are exact for whatever order the
    store's clock gave to ``recorded_at``; ``Selection.matches`` still decides row by row. On other
    stores, or with nothing to narrow by, the range is the whole log as it is now.
    """
    if isinstance(store, SqlEventStore):
        query = sa.select(sa.func.min(events.c.position), sa.func.max(events.c.position))
        if selection.start is not None:
            query = query.where(events.c.recorded_at >= selection.start)
        if selection.end is not None:
            query = query.where(events.c.recorded_at < selection.end)
        if selection.rollout is not None:
            query = query.where(events.c.correlation_id == selection.rollout)
        with store.engine.connect() as conn:
            first, last = conn.execute(query).one()
        return None if first is None else (int(first), int(last))
    head = store.head_position()
    return (1, head) if head else None


def select_records(store: EventStore, selection: Selection, page_size: int = PAGE_SIZE) -> Iterator[StoredRecord]:
    """The records of ``store`` that ``selection`` matches, in global order, read page by page.

    Reading stops at the last position that matched when the export began, so an export of a live
    log is the log as it was then and does not chase events appended while it runs.
    """
    bounds = position_range(store, selection)
    if bounds is None:
        return
    first, last = bounds
    for record in store.read_records(after=first - 1, page_size=page_size):
        if record.position > last:
            return
        if selection.matches(record):
            yield record


@contextlib.contextmanager
def atomic_output(path: Path) -> Iterator[TextIO]:
    """A UTF-8 text stream that becomes ``path`` only if the ``with`` block succeeds.

    Whether ``path`` can be written is settled before the block runs (call this before reading
    anything): a missing directory, a directory in the way or a denied permission raises
    ``InvalidInput`` and creates nothing. The stream writes a hidden temporary file in the same
    directory, which is synced and renamed over ``path`` at the end, or removed on any failure, so
    ``path`` never holds a partial export.
    """
    if path.is_dir():
        raise InvalidInput(f"cannot write {path}: it is a directory")
    directory = path.parent
    if not directory.is_dir():
        raise InvalidInput(f"cannot write {path}: directory {directory} does not exist")
    if path.exists() and not os.access(path, os.W_OK):
        raise InvalidInput(f"cannot write {path}: permission denied")
    try:
        handle, temp_name = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".partial")
    except OSError as error:
        raise InvalidInput(f"cannot write {path}: {(error.strerror or str(error)).lower()}") from None
    temp = Path(temp_name)
    try:
        mode = stat.S_IMODE(path.stat().st_mode) if path.exists() else 0o666 & ~_umask()
        with open(handle, "w", encoding="utf-8", newline="") as stream:
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temp, mode)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def _umask() -> int:
    current = os.umask(0o022)
    os.umask(current)
    return current
