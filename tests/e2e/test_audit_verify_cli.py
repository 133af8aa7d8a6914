"""`dma-upgrade audit verify` proves the log untouched, and names the first broken position."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from dma_upgrade.adapters.clock import SystemClock
from dma_upgrade.adapters.shapes.models import AuditVerifyOut
from dma_upgrade.adapters.sql.database import create_db_engine
from dma_upgrade.adapters.sql.event_store import SqlEventStore
from dma_upgrade.engine.agent_events import AgentRegistered
from dma_upgrade.engine.catalog import default_codec
from dma_upgrade.engine.events import NewEvent
from tests.e2e.cli import run_cli


def _fill(url: str, count: int = 6) -> None:
    engine = create_db_engine(url)
    store = SqlEventStore(engine, default_codec(), SystemClock())
    for i in range(count):
        store.append(f"agent-dma-{i}", 0, [NewEvent(event_id=uuid.uuid4(), event=AgentRegistered(
            name=f"dma-{i}", address=f"10.0.0.{i}", version="10.4.9.0-14794"))])
    engine.dispose()


def _sql(url: str, *statements: str) -> None:
    engine = create_db_engine(url)
    with engine.begin() as conn:
        for statement in statements:
            conn.execute(sa.text(statement))
    engine.dispose()


def test_an_untouched_log_verifies_and_says_how_many_events(db_url: str) -> None:
    _fill(db_url)
    result = run_cli("audit", "verify", database_url=db_url)
    assert result.returncode == 0, result.stderr
    assert "verified 6 events" in result.stdout


ALTER = ("UPDATE events SET payload = replace(payload, '10.0.0.3', '10.6.6.6') WHERE position = 4",)
DELETE = ("DELETE FROM events WHERE position = 3",)
REORDER = ("UPDATE events SET position = 1000 WHERE position = 2",
           "UPDATE events SET position = 2 WHERE position = 5",
           "UPDATE events SET position = 5 WHERE position = 1000")


@pytest.mark.parametrize(("tampering", "broken_at"), [(ALTER, 4), (DELETE, 3), (REORDER, 2)],
                         ids=["altered", "deleted", "reordered"])
def test_tampering_names_the_first_broken_position_and_exits_1(db_url: str, tampering: tuple[str, ...],
                                                               broken_at: int) -> None:
    _fill(db_url)
    _sql(db_url, *tampering)
    result = run_cli("audit", "verify", database_url=db_url)
    assert result.returncode == 1
    assert f"broken at position {broken_at}" in result.stderr
    assert result.stderr.count("\n") == 1
    as_json = run_cli("audit", "verify", "--output", "json", database_url=db_url)
    assert as_json.returncode == 1
    verdict = AuditVerifyOut.model_validate_json(as_json.stdout)
    assert (verdict.ok, verdict.broken_at) == (False, broken_at)
    assert as_json.stderr == result.stderr


def test_an_anchor_from_the_log_is_found(db_url: str) -> None:
    _fill(db_url)
    engine = create_db_engine(db_url)
    with engine.connect() as conn:
        digest = conn.execute(sa.text("SELECT hash FROM events WHERE position = 4")).scalar_one()
    engine.dispose()
    assert run_cli("audit", "verify", "--anchor", f"{digest}@4", database_url=db_url).returncode == 0
    wrong = run_cli("audit", "verify", "--anchor", f"{'a' * 64}@4", database_url=db_url)
    assert wrong.returncode == 1
    assert "anchor mismatch at position 4" in wrong.stderr
    gone = run_cli("audit", "verify", "--anchor", f"{digest}@99", database_url=db_url)
    assert gone.returncode == 1
    assert "no longer in the log" in gone.stderr


@pytest.mark.parametrize("anchor", ["nonsense", f"{'a' * 64}@99999999999999999999", f"{'a' * 64}@{2**63}",
                                    f"{'a' * 64}@0", f"{'a' * 64}@{'9' * 5000}"],
                         ids=["nonsense", "beyond-any-integer-column", "just-beyond", "zero", "5000-digits"])
def test_a_malformed_anchor_is_one_line_and_exit_2_not_a_broken_chain(db_url: str, anchor: str) -> None:
    _fill(db_url, count=1)
    result = run_cli("audit", "verify", "--anchor", anchor, database_url=db_url)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: an anchor must be HASH@POSITION")
    assert result.stderr.count("\n") == 1


def test_the_largest_position_is_an_anchor_the_log_does_not_hold(sqlite_url: str) -> None:
    _fill(sqlite_url, count=1)
    result = run_cli("audit", "verify", "--anchor", f"{'a' * 64}@{2**63 - 1}", database_url=sqlite_url)
    assert result.returncode == 1
    assert result.stderr == f"error: anchor position {2**63 - 1} is no longer in the log\n"

