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
import json
import os
import stat
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from json.encoder import encode_basestring
from pathlib import Path
from typing import Any, TextIO
from uuid import UUID

import sqlalchemy as sa

from dma_upgrade.adapters.progress_report import LogWalk, Reporter
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

    @property
    def everything(self) -> bool:
        """Whether every record matches (no side closed): nothing to check record by record."""
        return self.start is None and self.end is None and self.rollout is None

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


def _parsed(record: StoredRecord) -> Any:
    try:
        return json.loads(record.payload)
    except ValueError as error:
        raise EventDecodeError(record.position, record.event_type, f"payload is not JSON: {error}") from None


_JSON = json.JSONEncoder(ensure_ascii=False)
"""What ``json.dumps(value, ensure_ascii=False)`` encodes with, made once."""
_JSON_TEXT = encode_basestring
"""A string as JSON text, as ``_JSON`` writes it."""
_JSONL_ROW = ('{"position": %d, "recorded_at": "%s", "actor": %s, "stream_id": %s, "stream_version": %d, '
              '"event_type": %s, "schema_version": %d, "event_id": "%s", "correlation_id": %s, '
              '"causation_id": %s, "hash": %s, "payload": %s}\n')
"""A ``jsonl`` line: what ``json.dumps({field: value, ...}, ensure_ascii=False)`` writes of the fields, in the order
of ``FIELDS``, field by field (times and ids as strings need no escaping: digits, letters, dashes)."""
_CSV_ROW = '"' + '","'.join(["%s"] * len(FIELDS)) + '"\n'
"""A row as ``csv.writer(quoting=csv.QUOTE_ALL)`` writes it: every cell quoted (quotes in it doubled)."""
_REMEMBERED = 4096
"""How many correlation ids and payloads an export remembers as text (a rollout's events share the one, install
phases and steps succeeded repeat the other)."""


class _Writer:
    """One export's lines: each record's fields as text, with what repeats (times, correlation ids, payloads)
    turned into text once."""

    def __init__(self) -> None:
        self._payloads: dict[str, str] = {}
        self._ids: dict[UUID, str] = {}
        self._time: tuple[datetime | None, str] = (None, "")

    def jsonl(self, record: StoredRecord) -> str:
        meta = record.metadata
        return _JSONL_ROW % (
            record.position, self._recorded_at(record.recorded_at), _JSON_TEXT(meta.actor),
            _JSON_TEXT(record.stream_id), record.stream_version, _JSON_TEXT(record.event_type),
            record.schema_version, record.event_id, self._json_id(meta.correlation_id),
            "null" if meta.causation_id is None else f'"{meta.causation_id}"', _JSON_TEXT(record.hash),
            self._payload_json(record))

    def csv(self, record: StoredRecord) -> str:
        """The CSV row of ``record`` (``_CSV_ROW``); ids and times are formatted here, and need neither doubled
        quotes nor a guard."""
        meta = record.metadata
        return _CSV_ROW % (
            _csv_text(str(record.position)), self._recorded_at(record.recorded_at), _csv_text(meta.actor),
            _csv_text(record.stream_id), _csv_text(str(record.stream_version)), _csv_text(record.event_type),
            _csv_text(str(record.schema_version)), record.event_id, self._id(meta.correlation_id),
            "" if meta.causation_id is None else meta.causation_id, _csv_text(record.hash),
            _csv_text(record.payload))

    def _recorded_at(self, moment: datetime) -> str:
        """``utc_timestamp(moment)``; the text of the previous record's time reused (an append's events share it)."""
        last, text = self._time
        if moment != last:
            text = utc_timestamp(moment)
            self._time = (moment, text)
        return text

    def _id(self, value: UUID | None) -> str:
        """A correlation id's text ("" for None), remembered: a rollout's events share it."""
        if value is None:
            return ""
        text = self._ids.get(value)
        if text is None:
            if len(self._ids) >= _REMEMBERED:
                self._ids.clear()
            text = self._ids[value] = str(value)
        return text

    def _json_id(self, value: UUID | None) -> str:
        return "null" if value is None else f'"{self._id(value)}"'

    def _payload_json(self, record: StoredRecord) -> str:
        """The payload as ``json.dumps`` writes its parsed value: decoded and encoded once per distinct payload."""
        payload = record.payload
        text = self._payloads.get(payload)
        if text is None:
            text = _JSON.encode(_parsed(record))
            if len(self._payloads) >= _REMEMBERED:
                self._payloads.clear()
            self._payloads[payload] = text
        return text


def _csv_text(text: str) -> str:
    """``text`` in a quoted CSV cell: a ``'`` in front of what begins as ``NEUTRALISED``, quotes doubled."""
    if text.startswith(NEUTRALISED):
        text = "'" + text
    return text.replace('"', '""') if '"' in text else text


def export_lines(records: Iterable[StoredRecord], export_format: ExportFormat,
                 summary: ExportSummary) -> Iterator[str]:
    """The export as lines of text, one record at a time, ending with the anchor; counts into ``summary``."""
    writer = _Writer()
    line = writer.csv if export_format is ExportFormat.CSV else writer.jsonl
    if export_format is ExportFormat.CSV:
        yield _CSV_ROW % FIELDS
    for record in records:
        yield line(record)
        summary.count(record)
    if export_format is ExportFormat.CSV:
        yield f"# anchor {summary.anchor or 'none'} exported {summary.exported}\n"
    else:
        yield json.dumps({"anchor": summary.anchor, "exported": summary.exported}) + "\n"


def export_records(records: Iterable[StoredRecord], stream: TextIO, export_format: ExportFormat,
                   selection: Selection | None = None) -> ExportSummary:
    """Write the records ``selection`` matches to ``stream`` in ``export_format``, one at a time."""
    summary = ExportSummary()
    if selection is not None and not selection.everything:
        records = filter(selection.matches, records)
    stream.writelines(export_lines(records, export_format, summary))
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


def select_records(store: EventStore, selection: Selection, page_size: int = PAGE_SIZE,
                   reporter: Reporter | None = None) -> Iterator[StoredRecord]:
    """The records of ``store`` that ``selection`` matches, in global order, read page by page; ``reporter`` is
    told the positions read of those from the first to the last that can match.

    Reading stops at the last position that matched when the export began, so an export of a live
    log is the log as it was then and does not chase events appended while it runs.
    """
    bounds = position_range(store, selection)
    if bounds is None:
        return
    first, last = bounds
    keep = None if selection.everything else selection.matches
    walk = LogWalk(reporter, last, after=first - 1)
    for record in walk.records(store.read_records(after=first - 1, page_size=page_size)):
        if record.position > last:
            return
        if keep is None or keep(record):
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
