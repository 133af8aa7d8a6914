"""Projections are exact folds of the log: live-built tables equal a full rebuild, row for row."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from dma_upgrade.adapters.sql.projection_runner import ProjectionRunner, ProjectionStopped, read_rows
from dma_upgrade.engine.commands import CancelRollout, PauseRollout, ResumeRollout, RetryFailedAgents
from dma_upgrade.engine.events import RecordedEvent
from dma_upgrade.engine.service import OptionOverrides
from dma_upgrade.engine.upgrade_events import Step, StepInDoubt, StepStatusLearned
from dma_upgrade.projections.base import Recorded
from dma_upgrade.projections.catalog import all_projections
from dma_upgrade.projections.progress import AGENTS, ROLLOUTS, ProgressProjection
from dma_upgrade.projections.tables import MemoryRows, Row, RowAccess, TableSpec
from dma_upgrade.projections.timers import PendingTimersProjection
from tests.conftest import FakeClock
from tests.integration.rollout_harness import ACTOR, BACKUP, RolloutHarness
from tests.upgrade_states import put_in_doubt


def _sql_tables(runner: ProjectionRunner, engine: sa.Engine) -> dict[str, list[Row]]:
    return {spec.name: read_rows(engine, spec) for p in runner.projections.values() for spec in p.tables}


def _memory_tables(harness: RolloutHarness) -> dict[str, list[Row]]:
    tables: dict[str, list[Row]] = {}
    for projection in all_projections():
        rows = MemoryRows(projection.tables)
        for recorded in harness.store.read_all():
            projection.handle(recorded, rows)
        for spec in projection.tables:
            tables[spec.name] = sorted(rows.rows(spec.name), key=lambda r, s=spec: repr(s.key_of(r)))
    return tables


def _sorted(tables: dict[str, list[Row]], runner: ProjectionRunner) -> dict[str, list[Row]]:
    specs = {spec.name: spec for p in runner.projections.values() for spec in p.tables}
    return {name: sorted(rows, key=lambda r, s=specs[name]: repr(s.key_of(r))) for name, rows in tables.items()}


def _eventful_history(harness: RolloutHarness, runner: ProjectionRunner) -> None:
    """Failures, retries, a pause and a resume, a failed rollout retried, and a cancelled one."""
    paused = threading.Event()

    def pause_once(_: float) -> None:
        if not paused.is_set():
            paused.set()
            rollout_id = harness.service.rollouts()[0].plan.rollout_id
            harness.service.control(PauseRollout(rollout_id), actor=ACTOR)
            runner.catch_up()
            harness.service.control(ResumeRollout(rollout_id), actor=ACTOR)

    harness.gateway.fail("dma-1", Step.INSTALL, times=1)
    harness.gateway.fail("dma-2", Step.INSTALL, times=None)
    harness.waiter.on_wait = lambda _: runner.catch_up()
    harness.gateway_sleeper = pause_once
    planned, first = harness.start_and_run(max_concurrent="2")
    runner.catch_up()
    assert first.state.value == "Failed"
    harness.gateway.heal("dma-2")
    harness.service.control(RetryFailedAgents(planned.rollout_id), actor=ACTOR)
    assert harness.run(planned.rollout_id).state.value == "Completed"
    runner.catch_up()
    cancelled = harness.start(package=harness.upload("10.4.10.0-14900"))
    harness.service.control(CancelRollout(cancelled.rollout_id), actor=ACTOR)
    runner.catch_up()


@pytest.fixture
def harness(db_url: str, clock: FakeClock, tmp_path: Path) -> RolloutHarness:
    built = RolloutHarness(db_url, clock, tmp_path, step_seconds={Step.UPLOAD: 1.0},
                           sleeper=lambda seconds: built.gateway_sleeper(seconds))
    built.gateway_sleeper = lambda _: None
    yield built
    built.close()


def test_live_tables_equal_a_full_rebuild_row_for_row(harness: RolloutHarness, clock: FakeClock) -> None:
    runner = ProjectionRunner(harness.engine, harness.store, clock, all_projections(), batch_size=7)
    _eventful_history(harness, runner)
    live = _sorted(_sql_tables(runner, harness.engine), runner)
    assert live["progress_rollouts"] and live["progress_agents"]
    assert {r["state"] for r in live["progress_rollouts"]} == {"Completed", "Cancelled"}
    assert all(s.lag_events == 0 for s in runner.status())

    assert _memory_tables(harness) == live
    runner.rebuild()
    assert _sorted(_sql_tables(runner, harness.engine), runner) == live
    assert runner.rebuild(workers=3) == {p.name: runner.status()[0].head for p in all_projections()}
    assert _sorted(_sql_tables(runner, harness.engine), runner) == live
    assert all(s.lag_events == 0 and s.error is None for s in runner.status())


def test_scheduled_starts_late_and_on_time_replay_to_the_same_rows(harness: RolloutHarness, clock: FakeClock) -> None:
    runner = ProjectionRunner(harness.engine, harness.store, clock, all_projections(), batch_size=3)
    late_at = clock.now() + timedelta(minutes=5)
    late = harness.start(start_at=late_at)
    runner.catch_up()
    clock.advance(300 + 12.25)  # no engine ran at the time: one takes the start up 12.25 s after it
    harness.run(late.rollout_id)
    on_time_at = clock.now() + timedelta(minutes=5)
    on_time, _ = harness.start_and_run(package=harness.upload("10.4.10.0-14900"), start_at=on_time_at)
    runner.catch_up()

    live = _sorted(_sql_tables(runner, harness.engine), runner)
    rows = {row["rollout_id"]: row for row in live["progress_rollouts"]}
    assert {k: rows[str(late.rollout_id)][k] for k in ("start_at", "started_at", "start_lateness_seconds")} == {
        "start_at": late_at, "started_at": late_at + timedelta(seconds=12.25), "start_lateness_seconds": 12.25}
    assert {k: rows[str(on_time.rollout_id)][k] for k in ("start_at", "started_at", "start_lateness_seconds")} == {
        "start_at": on_time_at, "started_at": on_time_at, "start_lateness_seconds": 0.0}
    assert _memory_tables(harness) == live
    runner.rebuild()
    assert _sorted(_sql_tables(runner, harness.engine), runner) == live


def test_rows_dropped_from_a_small_row_cache_are_read_back_and_the_tables_stay_exact(
        harness: RolloutHarness, clock: FakeClock) -> None:
    live = ProjectionRunner(harness.engine, harness.store, clock, all_projections(), batch_size=4, max_cached_rows=6)
    _eventful_history(harness, live)
    assert _sorted(_sql_tables(live, harness.engine), live) == _memory_tables(harness)
    live.rebuild()
    assert _sorted(_sql_tables(live, harness.engine), live) == _memory_tables(harness)


def test_progress_totals_and_durations_follow_the_events(harness: RolloutHarness, clock: FakeClock) -> None:
    runner = ProjectionRunner(harness.engine, harness.store, clock, all_projections())
    harness.gateway.fail("dma-1", Step.INSTALL, times=None)
    planned, _ = harness.start_and_run()
    runner.catch_up()
    [rollout] = read_rows(harness.engine, ROLLOUTS)
    agents = {a["agent"]: a for a in read_rows(harness.engine, AGENTS)}
    assert (rollout["state"], rollout["failed"], rollout["completed"]) == ("Failed", 1, 3)
    assert rollout["waiting"] == rollout["in_flight"] == 0
    failed = agents["dma-1"]
    assert failed["state"] == "Failed"
    assert "injected" in failed["last_error"]
    assert failed["attempts"] == 1 + 1 + 3  # upload, stop SNMP, then install tried three times
    done = agents["dma-2"]
    assert done["steps_done"] == done["steps_planned"]
    assert done["version_after"] == "10.4.9.0-14794"
    assert done["durations"]["Uploaded"] >= 0
    assert sum(done["durations"].values()) > 0
    assert str(planned.rollout_id) == rollout["rollout_id"]


class _Exploding:
    """A projection that fails on the first upgrade event, to show a failing handler stops it."""

    name = "exploding"
    tables: tuple[TableSpec, ...] = ProgressProjection.tables
    event_types = ProgressProjection.event_types

    def handle(self, recorded: RecordedEvent, rows: RowAccess) -> None:
        if recorded.stream_id.startswith("upgrade-"):
            raise ValueError("boom")
        ProgressProjection().handle(recorded, rows)


def test_a_failing_handler_stops_its_projection_at_that_position_without_skipping(
        harness: RolloutHarness, clock: FakeClock) -> None:
    harness.start_and_run()
    first_upgrade_event = next(e.position for e in harness.store.read_all() if e.stream_id.startswith("upgrade-"))
    runner = ProjectionRunner(harness.engine, harness.store, clock, [_Exploding()], batch_size=3)
    with pytest.raises(ProjectionStopped, match=f"position {first_upgrade_event}: ValueError: boom"):
        runner.catch_up()
    [status] = runner.status()
    assert status.error_position == first_upgrade_event
    assert status.position < first_upgrade_event
    assert status.position >= first_upgrade_event - 3
    with pytest.raises(ProjectionStopped, match="is stopped at position"):
        runner.catch_up()
    assert runner.status()[0].position == status.position


class _ExplodingTimers(PendingTimersProjection):
    """Pending timers that fail on the first upgrade event."""

    name = "exploding_timers"

    def handle(self, recorded: Recorded, rows: RowAccess) -> None:
        if recorded.stream_id.startswith("upgrade-"):
            raise ValueError("boom")
        super().handle(recorded, rows)


def test_a_handler_failing_in_a_rebuild_process_stops_its_projection_and_not_the_others(
        harness: RolloutHarness, clock: FakeClock) -> None:
    harness.start_and_run()
    failing = next(e.position for e in harness.store.read_all()
                   if e.stream_id.startswith("upgrade-") and type(e.event) in _ExplodingTimers.event_types)
    runner = ProjectionRunner(harness.engine, harness.store, clock, [ProgressProjection(), _ExplodingTimers()])
    with pytest.raises(ProjectionStopped, match=f"exploding_timers is stopped at position {failing}: ValueError: boom"
                       ) as stopped:
        runner.rebuild(workers=2)
    assert "progress" not in str(stopped.value)
    progress, timers = runner.status()
    assert (progress.lag_events, progress.error) == (0, None)
    assert (timers.position, timers.error_position, timers.error) == (0, failing, "ValueError: boom")
    assert read_rows(harness.engine, AGENTS) == _memory_tables(harness)[AGENTS.name]


def test_two_runners_catching_up_at_once_apply_every_event_once(harness: RolloutHarness, clock: FakeClock) -> None:
    harness.start_and_run()
    runners = [ProjectionRunner(harness.engine, harness.store, clock, all_projections(), batch_size=5)
               for _ in range(3)]
    threads = [threading.Thread(target=r.catch_up) for r in runners]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert _sorted(_sql_tables(runners[0], harness.engine), runners[0]) == _memory_tables(harness)


def test_an_unknown_projection_name_is_refused(harness: RolloutHarness, clock: FakeClock) -> None:
    runner = ProjectionRunner(harness.engine, harness.store, clock, all_projections())
    with pytest.raises(Exception, match="unknown projection 'nope'"):
        runner.rebuild(["nope"])


def test_live_tables_equal_a_full_rebuild_with_steps_in_doubt_decided_and_manual_starts_awaited(
        harness: RolloutHarness, clock: FakeClock) -> None:
    """The engine loses an agent mid-step (in doubt, then asked), pair members wait for their manual start (Auto
    Start off), and an operator decides two steps in doubt of a later rollout, one applied and one not."""
    runner = ProjectionRunner(harness.engine, harness.store, clock, all_projections(), batch_size=3)
    harness.gateway.unreachable("dma-1", times=2)
    awaited: list[str] = []

    def operator_at_work(_: float) -> None:
        runner.catch_up()
        for agent in rollout.agents:
            if agent.name not in awaited and harness.service.upgrade(agent.upgrade_id).awaiting_manual_start:
                awaited.append(agent.name)
                harness.service.start_agent_manually(agent.name, actor=ACTOR)

    harness.waiter.on_wait = operator_at_work
    rollout = harness.start(failover_policy="backup-first", overrides=OptionOverrides(auto_start=False))
    assert harness.run(rollout.rollout_id).state.value == "Completed"
    assert BACKUP in awaited
    doubted = [type(r.event) for r in harness.upgrade_events(rollout, "dma-1")]
    assert StepInDoubt in doubted and StepStatusLearned in doubted

    later = harness.start(package=harness.upload("10.4.10.0-14900"), names=("dma-1", "dma-2"))
    put_in_doubt(harness.service, later, "dma-1", Step.INSTALL, "no answer")
    runner.catch_up()
    [doubt] = [r for r in read_rows(harness.engine, AGENTS) if r["in_doubt"]]
    assert (doubt["rollout_id"], doubt["agent"], doubt["step"], doubt["last_error"]) == (
        str(later.rollout_id), "dma-1", "install", "no answer")
    put_in_doubt(harness.service, later, "dma-2", Step.UPLOAD, "cut")
    harness.service.resolve_doubt(later.rollout_id, "dma-1", True, actor=ACTOR)
    runner.catch_up()
    harness.service.resolve_doubt(later.rollout_id, "dma-2", False, actor=ACTOR)
    runner.catch_up()

    live = _sorted(_sql_tables(runner, harness.engine), runner)
    agents = {(r["rollout_id"], r["agent"]): r for r in live["progress_agents"]}
    assert agents[(str(later.rollout_id), "dma-1")]["version_after"] == "10.4.10.0-14900"
    assert not any(r["in_doubt"] or r["awaiting_manual_start"] for r in live["progress_agents"])
    assert _memory_tables(harness) == live
    runner.rebuild()
    assert _sorted(_sql_tables(runner, harness.engine), runner) == live
    runner.rebuild(workers=3)
    assert _sorted(_sql_tables(runner, harness.engine), runner) == live
