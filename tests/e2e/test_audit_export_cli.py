"""`dma-upgrade audit export` writes the chosen events and an anchor that `audit verify` can check."""

from __future__ import annotations

import csv
import json
import os
import tempfile
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

import pytest
import sqlalchemy as sa

from dma_upgrade.adapters.sql.database import create_db_engine
from dma_upgrade.adapters.sql.event_store import SqlEventStore
from dma_upgrade.engine.agent_events import AgentRegistered
from dma_upgrade.engine.catalog import default_codec
from dma_upgrade.engine.events import EventMetadata, NewEvent, StoredRecord
from dma_upgrade.engine.hashchain import record_hash, verify_chain
from tests.conftest import FakeClock
from tests.e2e.cli import run_cli

T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
ROLLOUT = UUID("0b8e6a1c-2f4d-4e6b-9a7c-5d3e1f2a4b6c")


def _fill(url: str) -> list[StoredRecord]:
    """Six events ten minutes apart from 09:00 UTC; the 2nd and 4th belong to ROLLOUT."""
    engine = create_db_engine(url)
    clock = FakeClock(T0)
    store = SqlEventStore(engine, default_codec(), clock)
    for i in range(6):
        store.append(f"agent-dma-{i}", 0, [NewEvent(
            event_id=uuid.uuid4(),
            event=AgentRegistered(name=f"dma-{i}", address=f"10.0.0.{i}", version="10.4.9.0-14794"),
            metadata=EventMetadata(actor="alice", correlation_id=ROLLOUT if i in (1, 3) else None))])
        clock.advance(600)
    records = list(store.read_records())
    engine.dispose()
    return records


def _sql(url: str, statement: str, **params: object) -> None:
    engine = create_db_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text(statement), params)
    engine.dispose()


def _positions(jsonl: str) -> list[int]:
    return [json.loads(line)["position"] for line in jsonl.splitlines()[:-1]]


def _anchor(jsonl: str) -> str:
    anchor = json.loads(jsonl.splitlines()[-1])["anchor"]
    assert isinstance(anchor, str)
    return anchor


def test_a_jsonl_export_to_standard_output_ends_with_the_anchor_of_the_last_event(db_url: str) -> None:
    records = _fill(db_url)
    result = run_cli("audit", "export", "--format", "jsonl", database_url=db_url)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line.get("position") for line in lines[:-1]] == [1, 2, 3, 4, 5, 6]
    assert lines[1]["recorded_at"] == "2026-11-30T09:10:00.000000Z"
    assert lines[1]["correlation_id"] == str(ROLLOUT)
    assert lines[1]["payload"]["address"] == "10.0.0.1"
    assert lines[-1] == {"anchor": f"{records[-1].hash}@6", "exported": 6}
    assert result.stderr == f"anchor {records[-1].hash}@6 (6 events)\n"


def test_a_csv_export_to_a_file_holds_every_event_and_ends_with_the_anchor(db_url: str, tmp_path: Path) -> None:
    records = _fill(db_url)
    exports = tmp_path / "exports"
    exports.mkdir()
    target = exports / "audit.csv"
    result = run_cli("audit", "export", "--format", "csv", "--output", str(target), database_url=db_url)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert [p.name for p in exports.iterdir()] == ["audit.csv"]
    *rows, trailer = target.read_text(encoding="utf-8").splitlines()
    parsed = list(csv.DictReader(rows))
    assert [row["hash"] for row in parsed] == [r.hash for r in records]
    assert [row["payload"] for row in parsed] == [r.payload for r in records]
    assert trailer == f"# anchor {records[-1].hash}@6 exported 6"


FORMULAS = ["=cmd|' /C calc'!A0", "+1+1", "-2+3", "@SUM(A1:A9)", "\tx", "\rx", "'quoted"]
"""Actor names a spreadsheet would run as formulas (or that begin with the quote the export adds)."""


def test_a_csv_cell_a_spreadsheet_would_run_gets_a_quote_in_any_column_and_jsonl_keeps_it(db_url: str,
                                                                                         tmp_path: Path) -> None:
    engine = create_db_engine(db_url)
    store = SqlEventStore(engine, default_codec(), FakeClock(T0))
    for i, formula in enumerate(FORMULAS):
        store.append(f"-agent-{i}", 0, [NewEvent(
            event_id=uuid.uuid4(), event=AgentRegistered(name=f"dma-{i}", address="10.0.0.1", version="10.4.9.0-14794"),
            metadata=EventMetadata(actor=formula))])
    records = list(store.read_records())
    engine.dispose()

    target = tmp_path / "audit.csv"
    exported = run_cli("audit", "export", "--format", "csv", "--output", str(target), database_url=db_url)
    assert exported.returncode == 0, exported.stderr
    with target.open(encoding="utf-8", newline="") as stream:
        rows = [row for row in csv.DictReader(stream) if not row["position"].startswith("# anchor")]
    assert [row["actor"] for row in rows] == ["'" + formula for formula in FORMULAS]
    assert [row["stream_id"] for row in rows] == [f"'-agent-{i}" for i in range(len(FORMULAS))]
    assert [row["hash"] for row in rows] == [record.hash for record in records]  # other cells as they were
    jsonl = run_cli("audit", "export", "--format", "jsonl", database_url=db_url)
    assert [json.loads(line)["actor"] for line in jsonl.stdout.splitlines()[:-1]] == FORMULAS
    rebuilt = [record.model_copy(update={"metadata": EventMetadata(actor=row["actor"].removeprefix("'")),
                                         "stream_id": row["stream_id"].removeprefix("'")})
               for record, row in zip(records, rows, strict=True)]
    assert verify_chain(rebuilt).ok  # dropping the one quote gives back what was hashed


def test_the_time_window_and_the_rollout_choose_the_events(db_url: str) -> None:
    _fill(db_url)

    def positions(*options: str) -> list[int]:
        result = run_cli("audit", "export", "--format", "jsonl", *options, database_url=db_url)
        assert result.returncode == 0, result.stderr
        return _positions(result.stdout)

    assert positions("--from", "2026-11-30T09:10:00", "--to", "2026-11-30T10:30:00+01:00") == [2, 3]
    assert positions("--rollout", str(ROLLOUT)) == [2, 4]
    assert positions("--from", "2026-11-30", "--to", "2026-12-01", "--rollout", str(ROLLOUT).upper()) == [2, 4]


def test_a_to_in_the_future_is_fine(db_url: str) -> None:
    _fill(db_url)
    future = (datetime.now(UTC) + timedelta(days=365)).isoformat()
    result = run_cli("audit", "export", "--format", "jsonl", "--to", future, database_url=db_url)
    assert result.returncode == 0, result.stderr
    assert _positions(result.stdout) == [1, 2, 3, 4, 5, 6]


def test_no_matching_event_exits_0_with_an_anchor_line_without_a_hash(db_url: str) -> None:
    _fill(db_url)
    result = run_cli("audit", "export", "--format", "jsonl", "--rollout", str(uuid.uuid4()), database_url=db_url)
    assert result.returncode == 0, result.stderr
    assert result.stdout == '{"anchor": null, "exported": 0}\n'
    assert "no events matched" in result.stderr


def test_an_exported_anchor_is_accepted_by_verify_and_rejected_once_its_row_is_altered(db_url: str) -> None:
    _fill(db_url)
    exported = run_cli("audit", "export", "--format", "jsonl", "--rollout", str(ROLLOUT), database_url=db_url)
    anchor = _anchor(exported.stdout)
    assert anchor.endswith("@4")
    assert run_cli("audit", "verify", "--anchor", anchor, database_url=db_url).returncode == 0
    _sql(db_url, "UPDATE events SET payload = replace(payload, '10.0.0.3', '10.6.6.6') WHERE position = 4")
    tampered = run_cli("audit", "verify", "--anchor", anchor, database_url=db_url)
    assert tampered.returncode == 1
    assert "broken at position 4" in tampered.stderr


def test_a_forger_who_rehashes_the_chain_passes_a_plain_verify_but_not_the_anchor(db_url: str) -> None:
    records = _fill(db_url)
    anchor = _anchor(run_cli("audit", "export", "--format", "jsonl", database_url=db_url).stdout)
    previous = records[2].hash
    for record in records[3:]:
        payload = record.payload.replace("10.0.0.3", "10.6.6.6")
        previous = record_hash(previous, record.model_copy(update={"payload": payload}))
        _sql(db_url, "UPDATE events SET payload = :payload, hash = :hash WHERE position = :position",
             payload=payload, hash=previous, position=record.position)
    assert run_cli("audit", "verify", database_url=db_url).returncode == 0
    rejected = run_cli("audit", "verify", "--anchor", anchor, database_url=db_url)
    assert rejected.returncode == 1
    assert "anchor mismatch at position 6" in rejected.stderr


def test_a_failure_midway_leaves_no_partial_file_and_an_older_export_untouched(db_url: str,
                                                                              tmp_path: Path) -> None:
    _fill(db_url)
    exports = tmp_path / "exports"
    exports.mkdir()
    target = exports / "audit.jsonl"
    target.write_text("the previous export\n")
    _sql(db_url, "UPDATE events SET payload = '{not json' WHERE position = 5")
    result = run_cli("audit", "export", "--format", "jsonl", "--output", str(target), database_url=db_url)
    assert result.returncode == 8
    assert "position 5" in result.stderr
    assert result.stderr.count("\n") == 1
    assert [p.name for p in exports.iterdir()] == ["audit.jsonl"]
    assert target.read_text() == "the previous export\n"


@pytest.fixture
def unwritable_directory(tmp_path: Path) -> Iterator[Path]:
    """A directory in which creating a file is refused with 'permission denied'."""
    if os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o555)
        yield locked
        locked.chmod(0o755)
        return
    # Permission bits do not stop root; sysfs refuses new files even to root.
    try:
        handle, name = tempfile.mkstemp(dir="/sys")
    except PermissionError:
        yield Path("/sys")
        return
    except OSError as error:
        pytest.skip(f"no directory refuses root here: /sys says {error}")
    os.close(handle)
    os.unlink(name)
    pytest.skip("no directory refuses root here: /sys accepts new files")


BAD_INPUTS = [
    (["--format", "jsonl", "--from", "last tuesday"], "--from must be an ISO 8601 time or date"),
    (["--format", "jsonl", "--to", "2026-11-31"], "--to must be an ISO 8601 time or date"),
    (["--format", "jsonl", "--from", "2026-12-01", "--to", "2026-11-30T23:00:00Z"], "is after --to"),
    (["--format", "xml"], "--format must be jsonl or csv"),
    (["--format", "csv", "--rollout", "rollout-42"], "--rollout must be a rollout id"),
]


@pytest.mark.parametrize(("options", "message"), BAD_INPUTS,
                         ids=["malformed-from", "malformed-to", "from-after-to", "unknown-format", "malformed-rollout"])
def test_bad_input_is_one_line_exit_2_and_creates_nothing(db_url: str, tmp_path: Path, options: list[str],
                                                         message: str) -> None:
    _fill(db_url)
    exports = tmp_path / "exports"
    exports.mkdir()
    result = run_cli("audit", "export", *options, "--output", str(exports / "audit.out"), database_url=db_url)
    assert result.returncode == 2
    assert message in result.stderr
    assert result.stderr.count("\n") == 1
    assert result.stdout == ""
    assert list(exports.iterdir()) == []


def test_an_output_in_a_missing_directory_is_refused_and_creates_nothing(db_url: str, tmp_path: Path) -> None:
    _fill(db_url)
    target = tmp_path / "missing" / "audit.jsonl"
    result = run_cli("audit", "export", "--format", "jsonl", "--output", str(target), database_url=db_url)
    assert result.returncode == 2
    assert result.stderr == f"error: cannot write {target}: directory {target.parent} does not exist\n"
    assert not target.parent.exists()


def test_an_output_where_writing_is_denied_is_refused_and_creates_nothing(db_url: str,
                                                                         unwritable_directory: Path) -> None:
    _fill(db_url)
    target = unwritable_directory / "audit.jsonl"
    before = set(os.listdir(unwritable_directory))
    result = run_cli("audit", "export", "--format", "jsonl", "--output", str(target), database_url=db_url)
    assert result.returncode == 2
    assert result.stderr == f"error: cannot write {target}: permission denied\n"
    assert set(os.listdir(unwritable_directory)) == before
