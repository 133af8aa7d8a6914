"""Audit export writers: every field of every matching event, streamed, ending with an anchor."""

from __future__ import annotations

import csv
import io
import json
import tracemalloc
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

import pytest

from dma_upgrade.adapters.audit.export import (
    FIELDS,
    ExportFormat,
    Selection,
    atomic_output,
    export_records,
    parse_rollout,
    parse_time,
    select_records,
)
from dma_upgrade.adapters.sql.database import create_db_engine, migrate
from dma_upgrade.adapters.sql.event_store import SqlEventStore
from dma_upgrade.engine.agent_events import AgentRegistered
from dma_upgrade.engine.catalog import default_codec
from dma_upgrade.engine.codec import EventCodec
from dma_upgrade.engine.errors import EventDecodeError, InvalidInput
from dma_upgrade.engine.events import EventMetadata, NewEvent, StoredRecord
from dma_upgrade.engine.hashchain import verify_chain
from dma_upgrade.engine.ports import EventStore
from tests.conftest import FakeClock

T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
ROLLOUT = UUID("6f1c2d3e-4b5a-4c7d-8e9f-0a1b2c3d4e5f")


def registered(name: str, *, rollout: UUID | None = None, causation: UUID | None = None) -> NewEvent:
    return NewEvent(event_id=uuid.uuid4(),
                    event=AgentRegistered(name=name, address="10.0.0.1", cluster="nörth", version="10.4.9.0-14794"),
                    metadata=EventMetadata(actor="alice", correlation_id=rollout, causation_id=causation))


def five_events(store: EventStore, clock: FakeClock) -> list[StoredRecord]:
    """Events at 09:00, 09:10, 09:20, 09:30 and 09:40; the 2nd and 4th belong to ROLLOUT."""
    clock.current = T0
    first_of_rollout: UUID | None = None
    for i in range(5):
        in_rollout = i in (1, 3)
        new = registered(f"dma-{i}", rollout=ROLLOUT if in_rollout else None,
                         causation=first_of_rollout if i == 3 else None)
        first_of_rollout = first_of_rollout or (new.event_id if in_rollout else None)
        store.append(f"agent-dma-{i}", 0, [new])
        clock.advance(600)
    return list(store.read_records())


def export(store: EventStore, export_format: ExportFormat, selection: Selection | None = None) -> str:
    stream = io.StringIO()
    export_records(select_records(store, selection or Selection()), stream, export_format)
    return stream.getvalue()


def jsonl_positions(text: str) -> list[int]:
    return [json.loads(line)["position"] for line in text.splitlines()[:-1]]


def test_jsonl_writes_every_field_of_each_event_then_the_anchor_of_the_last(event_store: EventStore,
                                                                           clock: FakeClock) -> None:
    records = five_events(event_store, clock)
    lines = [json.loads(line) for line in export(event_store, ExportFormat.JSONL).splitlines()]
    assert len(lines) == 6
    fourth = lines[3]
    assert list(fourth) == list(FIELDS)
    assert fourth == {
        "position": 4, "recorded_at": "2026-11-30T09:30:00.000000Z", "actor": "alice",
        "stream_id": "agent-dma-3", "stream_version": 1, "event_type": "AgentRegistered", "schema_version": 2,
        "event_id": str(records[3].event_id), "correlation_id": str(ROLLOUT),
        "causation_id": str(records[1].event_id), "hash": records[3].hash,
        "payload": json.loads(records[3].payload),
    }
    assert fourth["payload"]["cluster"] == "nörth"
    assert lines[0]["correlation_id"] is None and lines[0]["causation_id"] is None
    assert lines[-1] == {"anchor": f"{records[-1].hash}@5", "exported": 5}


def test_csv_writes_a_header_each_event_with_its_stored_payload_then_the_anchor_comment(
        event_store: EventStore, clock: FakeClock) -> None:
    records = five_events(event_store, clock)
    *rows, trailer = export(event_store, ExportFormat.CSV).splitlines(keepends=True)
    assert trailer == f"# anchor {records[-1].hash}@5 exported 5\n"
    parsed = list(csv.DictReader(rows))
    assert [tuple(row) for row in parsed[:1]] == [FIELDS]
    assert [row["position"] for row in parsed] == ["1", "2", "3", "4", "5"]
    assert parsed[3]["payload"] == records[3].payload
    assert parsed[3]["recorded_at"] == "2026-11-30T09:30:00.000000Z"
    assert parsed[3]["causation_id"] == str(records[1].event_id)
    assert parsed[0]["correlation_id"] == "" and parsed[0]["causation_id"] == ""


def test_a_csv_export_holds_enough_to_recompute_the_hash_chain(event_store: EventStore, clock: FakeClock) -> None:
    five_events(event_store, clock)
    rows = list(csv.DictReader(export(event_store, ExportFormat.CSV).splitlines()[:-1]))
    rebuilt = [StoredRecord(
        position=int(row["position"]), event_id=UUID(row["event_id"]), stream_id=row["stream_id"],
        stream_version=int(row["stream_version"]), event_type=row["event_type"],
        schema_version=int(row["schema_version"]), payload=row["payload"],
        metadata=EventMetadata(actor=row["actor"], correlation_id=row["correlation_id"] or None,
                               causation_id=row["causation_id"] or None),
        recorded_at=datetime.fromisoformat(row["recorded_at"]), hash=row["hash"]) for row in rows]
    verdict = verify_chain(rebuilt)
    assert verdict.ok and verdict.verified == 5


def test_the_time_window_includes_its_start_and_excludes_its_end(event_store: EventStore,
                                                                 clock: FakeClock) -> None:
    five_events(event_store, clock)
    window = Selection(start=T0 + timedelta(minutes=10), end=T0 + timedelta(minutes=30))
    assert jsonl_positions(export(event_store, ExportFormat.JSONL, window)) == [2, 3]
    assert jsonl_positions(export(event_store, ExportFormat.JSONL, Selection(start=window.start))) == [2, 3, 4, 5]
    assert jsonl_positions(export(event_store, ExportFormat.JSONL, Selection(end=window.end))) == [1, 2, 3]


def test_the_rollout_filter_keeps_the_events_correlated_with_the_rollout(event_store: EventStore,
                                                                        clock: FakeClock) -> None:
    records = five_events(event_store, clock)
    text = export(event_store, ExportFormat.JSONL, Selection(rollout=ROLLOUT))
    assert jsonl_positions(text) == [2, 4]
    assert json.loads(text.splitlines()[-1]) == {"anchor": f"{records[3].hash}@4", "exported": 2}
    both = Selection(start=T0 + timedelta(minutes=20), rollout=ROLLOUT)
    assert jsonl_positions(export(event_store, ExportFormat.JSONL, both)) == [4]


def test_a_clock_that_went_backwards_hides_no_event_of_the_window(event_store: EventStore,
                                                                  clock: FakeClock) -> None:
    for i, minutes in enumerate([0, -60, 30, -30, 45]):
        clock.current = T0 + timedelta(minutes=minutes)
        event_store.append(f"agent-{i}", 0, [registered(f"dma-{i}")])
    early = Selection(end=T0 - timedelta(minutes=15))
    late = Selection(start=T0 - timedelta(minutes=45), end=T0 + timedelta(minutes=40))
    assert [r.position for r in select_records(event_store, early)] == [2, 4]
    assert [r.position for r in select_records(event_store, late)] == [1, 3, 4]


def test_an_export_is_the_log_as_it_was_when_it_began(event_store: EventStore, clock: FakeClock) -> None:
    five_events(event_store, clock)
    reading = select_records(event_store, Selection(), page_size=2)
    first = next(reading)
    event_store.append("agent-late", 0, [registered("late")])
    assert [first.position, *(r.position for r in reading)] == [1, 2, 3, 4, 5]


@pytest.mark.parametrize(("export_format", "trailer"), [(ExportFormat.JSONL, '{"anchor": null, "exported": 0}'),
                                                        (ExportFormat.CSV, "# anchor none exported 0")])
def test_nothing_matched_still_ends_with_an_anchor_line_without_a_hash(
        event_store: EventStore, clock: FakeClock, export_format: ExportFormat, trailer: str) -> None:
    five_events(event_store, clock)
    text = export(event_store, export_format, Selection(rollout=uuid.uuid4()))
    assert text.splitlines()[-1] == trailer
    assert export(event_store, export_format, Selection(start=T0 + timedelta(days=1))).splitlines()[-1] == trailer


def test_an_empty_log_exports_only_the_anchor_line(event_store: EventStore) -> None:
    assert export(event_store, ExportFormat.JSONL) == '{"anchor": null, "exported": 0}\n'


@pytest.mark.parametrize(("text", "expected"), [
    ("2026-11-30T09:00:00Z", T0),
    ("2026-11-30T09:00:00", T0),
    ("2026-11-30 11:00+02:00", T0),
    ("2026-11-30T09:00:00.000000+00:00", T0),
    ("2026-11-30", datetime(2026, 11, 30, tzinfo=UTC)),
])
def test_times_without_a_zone_are_utc_and_plain_dates_are_midnight(text: str, expected: datetime) -> None:
    assert parse_time(text, "--from") == expected


@pytest.mark.parametrize("bad", [
    lambda: parse_time("yesterday", "--from"),
    lambda: parse_time("2026-13-01", "--to"),
    lambda: parse_time("", "--from"),
    lambda: ExportFormat.parse("xml"),
    lambda: parse_rollout("rollout-1"),
    lambda: Selection(start=T0, end=T0 - timedelta(seconds=1)),
], ids=["words", "month-13", "empty", "format", "rollout", "from-after-to"])
def test_malformed_input_is_invalid_input(bad: Callable[[], object]) -> None:
    with pytest.raises(InvalidInput):
        bad()


def test_a_payload_that_is_not_json_stops_a_jsonl_export_naming_its_position(codec: EventCodec,
                                                                            clock: FakeClock) -> None:
    record = StoredRecord(position=7, event_id=uuid.uuid4(), stream_id="agent-x", stream_version=1,
                          event_type="AgentRegistered", schema_version=2, payload="{not json",
                          metadata=EventMetadata(), recorded_at=T0, hash="0" * 64)
    with pytest.raises(EventDecodeError, match="position 7"):
        export_records([record], io.StringIO(), ExportFormat.JSONL)


def test_an_export_file_appears_only_once_complete(tmp_path: Path) -> None:
    target = tmp_path / "audit.jsonl"
    with atomic_output(target) as stream:
        stream.write("line\n")
        assert not target.exists()
    assert target.read_text() == "line\n"
    assert [p.name for p in tmp_path.iterdir()] == ["audit.jsonl"]


def test_a_failed_export_leaves_no_file_and_an_older_export_untouched(tmp_path: Path) -> None:
    fresh, older = tmp_path / "fresh.csv", tmp_path / "older.csv"
    older.write_text("the previous export\n")
    for target in (fresh, older):
        with pytest.raises(RuntimeError), atomic_output(target) as stream:
            stream.write("half an export")
            raise RuntimeError("the database went away")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["older.csv"]
    assert older.read_text() == "the previous export\n"


@pytest.mark.parametrize(("where", "message"), [("missing/audit.csv", "does not exist"),
                                                ("", "is a directory")])
def test_an_unwritable_destination_is_refused_before_anything_is_created(tmp_path: Path, where: str,
                                                                        message: str) -> None:
    with pytest.raises(InvalidInput, match=message), atomic_output(tmp_path / where):
        pytest.fail("the block must not run")
    assert list(tmp_path.iterdir()) == []


EVENTS_FOR_MEMORY = 50_000
MEMORY_LIMIT = 20 * 1024 * 1024


@pytest.fixture
def big_sqlite_store(tmp_path: Path) -> Iterator[SqlEventStore]:
    """A SQLite store of 50,000 events, appended 100 at a time."""
    engine = create_db_engine(f"sqlite:///{tmp_path / 'store.db'}")
    migrate(engine)
    store = SqlEventStore(engine, default_codec(), FakeClock())
    event = AgentRegistered(name="dma-0", address="10.0.0.1", version="10.4.9.0-14794")
    metadata = EventMetadata(actor="alice", correlation_id=ROLLOUT)
    for i in range(EVENTS_FOR_MEMORY // 100):
        store.append(f"agent-{i}", 0, [NewEvent.model_construct(event_id=uuid.uuid4(), event=event, metadata=metadata)
                                       for _ in range(100)])
    yield store
    engine.dispose()


@pytest.mark.slow
def test_exporting_50000_events_to_a_file_stays_in_constant_memory(big_sqlite_store: SqlEventStore,
                                                                   tmp_path: Path) -> None:
    target = tmp_path / "audit.jsonl"
    tracemalloc.start()
    try:
        with atomic_output(target) as stream:
            summary = export_records(select_records(big_sqlite_store, Selection()), stream, ExportFormat.JSONL)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert summary.exported == EVENTS_FOR_MEMORY
    assert summary.last_position == EVENTS_FOR_MEMORY
    assert peak < MEMORY_LIMIT, f"peak {peak / 2**20:.1f} MiB"
    assert peak < target.stat().st_size / 4, "the export is held in memory"
