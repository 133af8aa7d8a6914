"""Who the command line records as the actor: a name from the environment is checked before anything is appended."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from dma_upgrade.adapters.sql.database import create_db_engine
from tests.e2e.cli import run_cli

ADD_AGENT = ("agents", "add", "dma-01", "--address", "10.0.0.11", "--version", "10.4.0.0-14112")


def _event_count(url: str) -> int:
    engine = create_db_engine(url)
    with engine.connect() as conn:
        count = conn.execute(sa.text("SELECT count(*) FROM events")).scalar_one()
    engine.dispose()
    return int(count)


@pytest.mark.parametrize("actor", ["\x1b[31mroot\x1b[0m", "alice\nbob", "a" * 100_000, " alice", "bell\x07"],
                         ids=["escape", "newline", "100-kB", "leading-space", "control"])
def test_an_actor_name_that_is_not_printable_or_too_long_is_one_line_exit_2_and_appends_nothing(
        sqlite_url: str, actor: str) -> None:
    result = run_cli(*ADD_AGENT, database_url=sqlite_url, env={"DMA_UPGRADE_ACTOR": actor})
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: invalid actor name in DMA_UPGRADE_ACTOR")
    assert result.stderr.count("\n") == 1
    assert len(result.stderr) < 300
    assert _event_count(sqlite_url) == 0


def test_a_printable_actor_name_is_recorded_on_the_events(sqlite_url: str) -> None:
    added = run_cli(*ADD_AGENT, database_url=sqlite_url, env={"DMA_UPGRADE_ACTOR": "Zoë Ops (night shift)"})
    assert added.returncode == 0, added.stderr
    exported = run_cli("audit", "export", "--format", "jsonl", database_url=sqlite_url)
    assert {json.loads(line)["actor"] for line in exported.stdout.splitlines()[:-1]} == {"Zoë Ops (night shift)"}
