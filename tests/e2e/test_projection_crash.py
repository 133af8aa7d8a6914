"""Projection updates are exactly-once across crashes: a worker process killed at random never loses or
doubles an event.

A rollout history is written to a real database, the projections are reset, then a worker process
(``projection_worker.py``: ``ProjectionRunner.catch_up`` in batches of 3) is started and SIGKILLed at
random moments again and again. After every kill each projection's tables must equal a fold of the
events up to its checkpoint; after one last uninterrupted run they must equal a fold of the whole log.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from dma_upgrade.adapters.sql.projection_runner import read_rows
from dma_upgrade.adapters.sql.read_models import checkpoints, sql_table
from dma_upgrade.engine.commands import CancelRollout, RetryFailedAgents
from dma_upgrade.engine.events import RecordedEvent
from dma_upgrade.engine.upgrade_events import Step
from dma_upgrade.projections.base import Projection
from dma_upgrade.projections.catalog import all_projections
from dma_upgrade.projections.tables import MemoryRows, Row, TableSpec
from tests.conftest import FakeClock
from tests.e2e.cli import ROOT
from tests.integration.rollout_harness import ACTOR, RolloutHarness

WORKER = Path(__file__).with_name("projection_worker.py")
BATCH_SIZE = 3
KILLS = 12
SEED = 20261130


def _by_key(spec: TableSpec, rows: list[Row]) -> list[Row]:
    return sorted(rows, key=lambda r: repr(spec.key_of(r)))


def _fold(projection: Projection, events: list[RecordedEvent], upto: int) -> dict[str, list[Row]]:
    """A fresh in-memory fold of ``projection`` over the events at positions 1..upto."""
    rows = MemoryRows(projection.tables)
    for recorded in events:
        if recorded.position > upto:
            break
        projection.handle(recorded, rows)
    return {spec.name: _by_key(spec, list(rows.rows(spec.name))) for spec in projection.tables}


def _sql(engine: sa.Engine, projection: Projection) -> dict[str, list[Row]]:
    return {spec.name: _by_key(spec, read_rows(engine, spec)) for spec in projection.tables}


def _checkpoints(engine: sa.Engine) -> dict[str, tuple[int, str | None]]:
    with engine.connect() as conn:
        return {r.name: (r.position, r.error) for r in conn.execute(sa.select(checkpoints))}


def _reset(engine: sa.Engine) -> None:
    """What ``projections rebuild`` does before replaying: empty every projection's tables and checkpoint."""
    with engine.begin() as conn:
        for projection in all_projections():
            for spec in projection.tables:
                conn.execute(sql_table(spec).delete())
        conn.execute(checkpoints.delete())


def _fill(harness: RolloutHarness) -> None:
    """A history with a failure, a retry, a second package and a cancelled rollout."""
    harness.gateway.fail("dma-1", Step.INSTALL, times=1)
    harness.gateway.fail("dma-2", Step.INSTALL, times=None)
    planned, first = harness.start_and_run(max_concurrent="2")
    assert first.state.value == "Failed"
    harness.gateway.heal("dma-2")
    harness.service.control(RetryFailedAgents(planned.rollout_id), actor=ACTOR)
    assert harness.run(planned.rollout_id).state.value == "Completed"
    cancelled = harness.start(package=harness.upload("10.4.10.0-14900"))
    harness.service.control(CancelRollout(cancelled.rollout_id), actor=ACTOR)


def _start_worker(url: str, seed: int) -> subprocess.Popen[str]:
    worker = subprocess.Popen([sys.executable, str(WORKER), url, str(BATCH_SIZE), str(seed)], cwd=ROOT, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert worker.stdout is not None
    ready = worker.stdout.readline()
    if ready.strip() != "ready":
        worker.kill()
        _, err = worker.communicate()
        pytest.fail(f"the worker did not start: {ready!r} {err}")
    return worker


@pytest.fixture
def harness(db_url: str, clock: FakeClock, tmp_path: Path) -> Iterator[RolloutHarness]:
    built = RolloutHarness(db_url, clock, tmp_path, plain_agents=4)
    yield built
    built.close()


@pytest.mark.slow
def test_a_worker_killed_at_random_moments_applies_every_event_exactly_once(
        harness: RolloutHarness, db_url: str) -> None:
    _fill(harness)
    events = list(harness.store.read_all())
    head = harness.head()
    assert head == events[-1].position > 100
    _reset(harness.engine)
    projections = {p.name: p for p in all_projections()}

    rng = random.Random(SEED)
    kills = attempts = 0
    mid_run = set()
    last: dict[str, int] = dict.fromkeys(projections, 0)
    while kills < KILLS:
        attempts += 1
        assert attempts <= 10 * KILLS, f"only {kills} kills landed in {attempts} runs"
        worker = _start_worker(db_url, rng.randrange(1000))
        time.sleep(rng.uniform(0.005, 0.120))
        worker.send_signal(signal.SIGKILL)
        _, err = worker.communicate(timeout=60)
        if worker.returncode == 0:  # it finished first: start the history over so later kills land mid-run
            _reset(harness.engine)
            last = dict.fromkeys(projections, 0)
            continue
        assert worker.returncode == -signal.SIGKILL, err
        kills += 1
        positions = _checkpoints(harness.engine)
        for name, projection in projections.items():
            position, error = positions.get(name, (0, None))
            assert error is None
            assert last[name] <= position <= head, name
            last[name] = position
            if 0 < position < head:
                mid_run.add((kills, name))
            assert _sql(harness.engine, projection) == _fold(projection, events, position), \
                f"{name} after kill {kills} at checkpoint {position}"
    assert mid_run, "no kill landed while a projection was part-way through the log"

    final = _start_worker(db_url, 0)
    assert final.stdout is not None and final.stderr is not None
    out = final.stdout.read()  # not communicate(): it reads the pipe past what readline() already buffered
    err = final.stderr.read()
    assert final.wait(timeout=120) == 0, err
    assert out.strip() == "done"
    assert _checkpoints(harness.engine) == dict.fromkeys(projections, (head, None))
    for projection in projections.values():
        assert _sql(harness.engine, projection) == _fold(projection, events, head), projection.name
