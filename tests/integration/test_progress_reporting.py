"""Long work tells a reporter its total once and then what it did, a batch at a time (never per event), and does
the same work with a reporter as without one: verifying, exporting, rebuilding, migrating."""

from __future__ import annotations

import io
import math
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.script import ScriptDirectory

from dma_upgrade.adapters.audit.check import check_audit
from dma_upgrade.adapters.audit.export import (
    ExportFormat,
    Selection,
    export_records,
    position_range,
    select_records,
)
from dma_upgrade.adapters.clock import SystemClock
from dma_upgrade.adapters.progress_report import REPORT_EVERY, LogWalk
from dma_upgrade.adapters.sql.database import alembic_config, create_db_engine, migrate
from dma_upgrade.adapters.sql.event_store import SqlEventStore
from dma_upgrade.adapters.sql.projection_runner import ProjectionRunner
from dma_upgrade.engine.agent_events import AgentRegistered
from dma_upgrade.engine.catalog import default_codec
from dma_upgrade.engine.events import NewEvent
from dma_upgrade.projections.catalog import all_projections

EVENTS = 2 * REPORT_EVERY + 345


@dataclass
class Recorder:
    """A reporter that keeps what it was told."""

    totals: list[int] = field(default_factory=list)
    advances: list[int] = field(default_factory=list)

    def start(self, total: int) -> None:
        self.totals.append(total)

    def advance(self, done: int) -> None:
        self.advances.append(done)


@pytest.fixture
def store(sqlite_url: str) -> Iterator[SqlEventStore]:
    engine = create_db_engine(sqlite_url)
    filled = SqlEventStore(engine, default_codec(), SystemClock())
    for i in range(EVENTS):
        filled.append(f"agent-dma-{i}", 0, [NewEvent(event_id=uuid.uuid4(), event=AgentRegistered(
            name=f"dma-{i}", address=f"10.{i // 65536}.{i // 256 % 256}.{i % 256}", version="10.4.9.0-14794"))])
    yield filled
    engine.dispose()


def test_verify_reports_the_head_then_a_batch_of_positions_at_a_time(store: SqlEventStore) -> None:
    reporter = Recorder()

    report = check_audit(store, reporter=reporter)

    assert report.ok and report.chain.verified == EVENTS
    assert reporter.totals == [EVENTS]
    assert sum(reporter.advances) == EVENTS
    assert len(reporter.advances) == math.ceil(EVENTS / REPORT_EVERY)


def test_an_export_with_a_reporter_writes_the_same_bytes_and_reports_the_stretch_it_reads(
        store: SqlEventStore) -> None:
    records = list(store.read_records())
    selection = Selection(start=records[REPORT_EVERY + 10].recorded_at)
    bounds = position_range(store, selection)
    assert bounds is not None
    first, last = bounds
    reporter = Recorder()
    reported, plain = io.StringIO(), io.StringIO()

    export_records(select_records(store, selection, reporter=reporter), reported, ExportFormat.JSONL)
    export_records(select_records(store, selection), plain, ExportFormat.JSONL)

    assert reported.getvalue() == plain.getvalue()
    assert reporter.totals == [last - first + 1]
    assert sum(reporter.advances) == last - first + 1


def test_a_rebuild_reports_the_log_replayed_in_one_process_and_in_several(sqlite_url: str,
                                                                          store: SqlEventStore) -> None:
    engine = create_db_engine(sqlite_url)
    runner = ProjectionRunner(engine, store, SystemClock(), all_projections(), batch_size=REPORT_EVERY)
    try:
        for workers in (1, 3):
            reporter = Recorder()
            applied = runner.rebuild(workers=workers, reporter=reporter)
            assert reporter.totals == [EVENTS], workers
            assert sum(reporter.advances) == EVENTS, workers
            assert applied == runner.rebuild(workers=workers)
    finally:
        engine.dispose()


def test_migrating_reports_each_migration_and_nothing_to_do_once_current(tmp_path: Path) -> None:
    migrations = len(list(ScriptDirectory.from_config(alembic_config()).walk_revisions()))
    engine = create_db_engine(f"sqlite:///{tmp_path}/fresh.db")
    try:
        fresh, current = Recorder(), Recorder()
        migrate(engine, reporter=fresh)
        migrate(engine, reporter=current)
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM events")).scalar() == 0
    finally:
        engine.dispose()
    assert fresh.totals == [migrations] and fresh.advances == [1] * migrations
    assert current.totals == [0] and current.advances == []


def test_a_walk_counts_no_position_twice_nor_one_past_its_end() -> None:
    reporter = Recorder()
    walk = LogWalk(reporter, 100, after=10)

    for position in (40, 30, 40, 150, 200):
        walk.reach(position)

    assert reporter.totals == [90]
    assert reporter.advances == [30, 60]


@dataclass(frozen=True)
class At:
    position: int


def test_a_walk_gives_the_records_through_untouched_with_a_reporter_or_without() -> None:
    records = [At(position) for position in range(1, 8)]
    reporter = Recorder()

    assert list(LogWalk(reporter, 7).records(records, every=3)) == records == list(LogWalk(None, 7).records(records))
    assert reporter.advances == [3, 3, 1]
