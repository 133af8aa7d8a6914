"""The audit export writes, byte for byte, what ``json.dumps`` and ``csv.writer`` write of each record's fields.

The export spells its lines out field by field (``adapters.audit.export``); these tests hold it to the plain
library encoding of the same fields, on values that need escaping, quoting or a formula guard.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from uuid import UUID

import pytest

from dma_upgrade.adapters.audit.export import FIELDS, NEUTRALISED, ExportFormat, ExportSummary, export_lines
from dma_upgrade.engine.events import EventMetadata, StoredRecord
from dma_upgrade.engine.hashchain import utc_timestamp

T0 = datetime(2026, 11, 30, 9, 0, 0, 123456, tzinfo=UTC)
EVENT_ID = UUID("0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9")
ROLLOUT = UUID("6f1c2d3e-4b5a-4c7d-8e9f-0a1b2c3d4e5f")
PAYLOADS = ['{"name":"dma-1","cluster":"nörth","n":1.5,"big":1e300,"none":null,"list":[1,2,{"a":[]}]}',
            '{"q":"say \\"hi\\"\\n\\ttab \\u0001 \\u2028 \\ud83d\\ude00"}', '{ "spaced" : [ 1 , 2 ] }', '[]', '"text"',
            '-12', '{"é":"\\u00e9"}']
TEXTS = ["alice", '=HYPERLINK("x")', "+1", "-1", "@cmd", "\tTab", "\rCR", "'quoted", 'say "hi"', "nörth, \n two",
         ""]
TIMES = [T0, T0, T0 + timedelta(microseconds=1), T0.astimezone(timezone(timedelta(hours=2))),
         T0.replace(tzinfo=None), datetime(999, 1, 2, 3, 4, 5, tzinfo=UTC)]


def record(position: int, *, text: str = "alice", payload: str = PAYLOADS[0], recorded_at: datetime = T0,
           correlation: UUID | None = ROLLOUT, causation: UUID | None = None, number: int = 1) -> StoredRecord:
    return StoredRecord.model_construct(
        position=position, event_id=EVENT_ID, stream_id=f"agent-{text}", stream_version=number, event_type=text,
        schema_version=number, payload=payload, hash=text or "0" * 64, recorded_at=recorded_at,
        metadata=EventMetadata.model_construct(actor=text, correlation_id=correlation, causation_id=causation))


def records() -> list[StoredRecord]:
    """Every payload, text and time of the lists above, with ids and without, numbers negative and not."""
    made = [record(1, payload=payload) for payload in PAYLOADS]
    made += [record(2, text=text, number=-3, correlation=None, causation=EVENT_ID) for text in TEXTS]
    made += [record(3, recorded_at=moment) for moment in TIMES]
    return made


def fields(item: StoredRecord, payload: Any) -> list[Any]:
    """The fields of an exported record in the order of ``FIELDS``, as the module docstring describes them."""
    meta = item.metadata
    return [item.position, utc_timestamp(item.recorded_at), meta.actor, item.stream_id, item.stream_version,
            item.event_type, item.schema_version, str(item.event_id),
            None if meta.correlation_id is None else str(meta.correlation_id),
            None if meta.causation_id is None else str(meta.causation_id), item.hash, payload]


def plain_jsonl(item: StoredRecord) -> str:
    return json.dumps(dict(zip(FIELDS, fields(item, json.loads(item.payload)), strict=True)),
                      ensure_ascii=False) + "\n"


def plain_csv(values: list[Any]) -> str:
    cells = ["" if value is None else str(value) for value in values]
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n", quoting=csv.QUOTE_ALL).writerow(
        ["'" + cell if cell.startswith(NEUTRALISED) else cell for cell in cells])
    return buffer.getvalue()


def exported(export_format: ExportFormat) -> list[str]:
    return list(export_lines(records(), export_format, ExportSummary()))


def test_a_jsonl_line_is_json_dumps_of_the_fields() -> None:
    *lines, trailer = exported(ExportFormat.JSONL)
    assert lines == [plain_jsonl(item) for item in records()]
    assert trailer == json.dumps({"anchor": f"{records()[-1].hash}@3", "exported": len(lines)}) + "\n"


def test_a_csv_line_is_csv_writer_of_the_guarded_cells() -> None:
    header, *lines, trailer = exported(ExportFormat.CSV)
    assert header == plain_csv(list(FIELDS))
    assert lines == [plain_csv(fields(item, item.payload)) for item in records()]
    assert trailer == f"# anchor {records()[-1].hash}@3 exported {len(lines)}\n"


@pytest.mark.parametrize("export_format", list(ExportFormat))
def test_a_repeated_payload_time_and_correlation_are_written_alike_each_time(export_format: ExportFormat) -> None:
    lines = list(export_lines([record(1), record(1), record(1, correlation=None), record(1)], export_format,
                              ExportSummary()))
    body = lines[1:-1] if export_format is ExportFormat.CSV else lines[:-1]
    assert body[0] == body[1] == body[3] != body[2]
