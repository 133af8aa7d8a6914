"""Prometheus metrics on a real database: a rollout with failures run through the instrumented store,
the fleet gauges read from the projections (right after a restart too), and the hash-chain watch."""

from __future__ import annotations

import logging
import os
import socket
from datetime import timedelta
from pathlib import Path
from uuid import uuid4

import pytest
import sqlalchemy as sa
from prometheus_client import generate_latest

from dma_upgrade.adapters.sql.leases import SqlLeases
from dma_upgrade.adapters.sql.schema import events
from dma_upgrade.engine.events import Event, NewEvent
from dma_upgrade.engine.rollout import RolloutState
from dma_upgrade.engine.upgrade_events import AgentUpgradePlan, AgentUpgradeScheduled, Step, StepStarted, StepSucceeded
from dma_upgrade.engine.upgrade_machine import UpgradeState
from tests.conftest import FakeClock
from tests.exposition import Scrape
from tests.integration.metrics_harness import AGENTS, INSTALL_SECONDS, Wired, run_with_failures, serving_process
from tests.integration.rollout_harness import PACKAGE_VERSION, START_VERSION


def test_a_rollout_with_failures_counts_transitions_attempts_and_failures_by_step(wired: Wired) -> None:
    run_with_failures(wired)

    scrape = wired.scrape()
    transitions = scrape.by("dma_upgrade_agent_upgrade_transitions_total", "state")
    assert transitions == {"Scheduled": 3, "Uploaded": 2, "SNMPStopped": 2, "Installing": 2, "Completed": 2,
                           "Failed": 1}
    attempts = scrape.by("dma_upgrade_step_attempts_total", "step")
    assert attempts == {"upload": 2 + 3, "stop_snmp": 2, "install": 3, "start": 2}
    failures = scrape.by("dma_upgrade_step_failures_total", "step")
    assert failures == {"upload": 3, "install": 1}
    assert scrape.value("dma_upgrade_agent_upgrade_failures_total", step="upload") == 1


def test_step_and_upgrade_durations_are_observed_in_seconds_of_the_clock(wired: Wired) -> None:
    run_with_failures(wired)

    scrape = wired.scrape()
    installed = {"step": "install", "outcome": "succeeded"}
    assert scrape.value("dma_upgrade_step_duration_seconds_count", **installed) == 2
    assert scrape.value("dma_upgrade_step_duration_seconds_sum", **installed) == pytest.approx(2 * INSTALL_SECONDS)
    assert scrape.value("dma_upgrade_step_duration_seconds_bucket", le="300.0", **installed) == 0
    assert scrape.value("dma_upgrade_step_duration_seconds_bucket", le="600.0", **installed) == 2
    assert scrape.value("dma_upgrade_step_duration_seconds_count", step="install", outcome="failed") == 1
    assert scrape.value("dma_upgrade_step_duration_seconds_count", step="upload", outcome="failed") == 3
    assert scrape.value("dma_upgrade_agent_upgrade_duration_seconds_count") == 2
    assert scrape.value("dma_upgrade_agent_upgrade_duration_seconds_sum") >= 2 * INSTALL_SECONDS  # type: ignore[operator]


def test_every_appended_event_is_counted_by_category_and_every_append_timed(wired: Wired) -> None:
    run_with_failures(wired)

    scrape = wired.scrape()
    stored = sum(1 for _ in wired.harness.store.read_category("upgrade-"))
    assert scrape.value("dma_upgrade_events_appended_total", category="upgrade") == stored
    appends = scrape.value("dma_upgrade_event_store_append_duration_seconds_count", outcome="appended")
    assert appends is not None and 0 < appends <= sum(scrape.series("dma_upgrade_events_appended_total").values())
    assert scrape.value("dma_upgrade_event_store_append_duration_seconds_bucket", outcome="appended",
                        le="+Inf") == appends


def fleet(scrape: Scrape) -> dict[str, dict[str, float]]:
    """The fleet gauges of a scrape, by family and then by the value of their one label ('' if none)."""
    gauges = ("dma_upgrade_rollouts", "dma_upgrade_agent_upgrades", "dma_upgrade_agents",
              "dma_upgrade_clusters_on_mixed_versions", "dma_upgrade_pending_timers",
              "dma_upgrade_projection_lag_events", "dma_upgrade_agents_left_stopped")
    return {name: {next(iter(dict(labels).values()), ""): value for labels, value in scrape.series(name).items()}
            for name in gauges}


def test_fleet_gauges_read_the_projections_at_scrape_time(wired: Wired) -> None:
    run_with_failures(wired)
    head = wired.harness.head()
    assert fleet(wired.scrape())["dma_upgrade_projection_lag_events"] == dict.fromkeys(
        wired.container.projections.projections, head)

    wired.container.projections.catch_up()
    gauges = fleet(wired.scrape())

    assert gauges["dma_upgrade_rollouts"] == {**dict.fromkeys((s.value for s in RolloutState), 0), "Failed": 1}
    assert gauges["dma_upgrade_agent_upgrades"] == {**dict.fromkeys((s.value for s in UpgradeState), 0),
                                                    "Completed": 2, "Failed": 1}
    assert gauges["dma_upgrade_agents"] == {PACKAGE_VERSION: 2, START_VERSION: 3}
    assert gauges["dma_upgrade_clusters_on_mixed_versions"] == {"": 1}
    assert gauges["dma_upgrade_agents_left_stopped"] == {"": 0}
    assert gauges["dma_upgrade_pending_timers"] == {"scheduled-start": 0, "delayed-start": 0, "retry-backoff": 0}
    assert set(gauges["dma_upgrade_projection_lag_events"].values()) == {0}
    scrape = wired.scrape()
    assert scrape.value("dma_upgrade_event_store_head_position") == head
    assert scrape.series("dma_upgrade_agent_upgrade_in_state_since_timestamp_seconds") == {}


def test_gauges_are_the_same_right_after_a_restart_and_counters_start_again(wired: Wired, db_url: str,
                                                                          clock: FakeClock) -> None:
    run_with_failures(wired)
    wired.container.projections.catch_up()
    before = fleet(wired.scrape())
    wired.container.close()

    restarted, metrics = serving_process(db_url, clock)
    try:
        after = Scrape(generate_latest(metrics.registry).decode())
        assert fleet(after) == before
        assert after.series("dma_upgrade_agent_upgrade_transitions_total") == {}
        assert after.value("dma_upgrade_hash_chain_verified_position") == 0
    finally:
        restarted.close()


def test_a_scheduled_rollout_shows_as_a_pending_timer_with_its_due_time(wired: Wired, clock: FakeClock) -> None:
    due = clock.now() + timedelta(hours=2)
    wired.harness.start(names=AGENTS, start_at=due)
    wired.container.projections.catch_up()

    scrape = wired.scrape()

    assert scrape.value("dma_upgrade_pending_timers", kind="scheduled-start") == 1
    assert scrape.value("dma_upgrade_pending_timers_next_due_timestamp_seconds",
                        kind="scheduled-start") == due.timestamp()
    assert scrape.value("dma_upgrade_rollouts", state="Planned") == 1
    assert scrape.value("dma_upgrade_agent_upgrades", state="Scheduled") == 3
    assert scrape.value("dma_upgrade_agent_upgrade_in_state_since_timestamp_seconds",
                        state="Scheduled") == clock.now().timestamp()


def test_a_scheduled_start_fired_late_is_observed_and_logged_once(
        wired: Wired, clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    start_at = clock.now() + timedelta(minutes=1)
    planned = wired.harness.start(names=AGENTS, start_at=start_at)
    clock.advance(60 + 12)  # no engine ran at the time: one takes the start up 12 s after it

    with caplog.at_level(logging.WARNING, logger="dma_upgrade.engine"):
        wired.harness.run(planned.rollout_id)

    scrape = wired.scrape()
    assert scrape.value("dma_upgrade_rollout_start_lateness_seconds_count") == 1
    assert scrape.value("dma_upgrade_rollout_start_lateness_seconds_sum") == 12
    assert scrape.value("dma_upgrade_rollout_start_lateness_seconds_bucket", le="10.0") == 0
    assert scrape.value("dma_upgrade_rollout_start_lateness_seconds_bucket", le="30.0") == 1
    late = [r for r in caplog.records if r.getMessage().startswith("scheduled start")]
    assert [(r.levelno, r.getMessage()) for r in late] == [
        (logging.WARNING, f"scheduled start of rollout {planned.rollout_id} fired 12 s late "
                          f"(scheduled 2026-11-30T09:01:00Z)")]


def test_a_start_on_time_is_observed_as_zero_and_not_logged_and_an_unscheduled_one_is_not_observed(
        wired: Wired, clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="dma_upgrade.engine"):
        wired.harness.start_and_run(names=AGENTS, start_at=clock.now() + timedelta(hours=1))  # waited for: on time
        wired.harness.start_and_run(names=AGENTS, package=wired.harness.upload("10.4.10.0-14900"))

    scrape = wired.scrape()
    assert scrape.value("dma_upgrade_rollout_start_lateness_seconds_count") == 1
    assert scrape.value("dma_upgrade_rollout_start_lateness_seconds_sum") == 0
    assert scrape.value("dma_upgrade_rollout_start_lateness_seconds_bucket", le="0.5") == 1
    assert not [r for r in caplog.records if r.getMessage().startswith("scheduled start")]


def new(event: Event) -> NewEvent:
    return NewEvent(event_id=uuid4(), event=event)


def scheduled() -> tuple[str, NewEvent]:
    """A new upgrade stream and the event that creates it."""
    upgrade_id = uuid4()
    event = AgentUpgradeScheduled(upgrade_id=upgrade_id, agent="dma-1", package_sha256="0" * 64,
                                  target_version=PACKAGE_VERSION, plan=AgentUpgradePlan())
    return f"upgrade-{upgrade_id}", new(event)


def test_a_step_started_before_a_restart_is_timed_from_its_stored_start(wired: Wired, clock: FakeClock) -> None:
    stream, created = scheduled()
    wired.harness.store.append(stream, 0, [created, new(StepStarted(step=Step.UPLOAD, attempt=1,
                                                                    idempotency_key="k1"))])
    clock.advance(90)

    wired.metrics.store.append(stream, 2, [new(StepSucceeded(step=Step.UPLOAD, attempt=1))])

    scrape = wired.scrape()
    assert scrape.value("dma_upgrade_step_duration_seconds_sum", step="upload", outcome="succeeded") == 90
    assert scrape.series("dma_upgrade_agent_upgrade_transitions_total") == {frozenset({("state", "Uploaded")}): 1}


def test_the_chain_watch_verifies_only_new_records_and_reports_a_break(wired: Wired) -> None:
    chain = wired.metrics.chain
    first = chain.verify_new()
    head = wired.harness.head()
    assert first.ok and first.verified == head and first.last_position == head

    wired.harness.start(names=AGENTS)
    added = wired.harness.head() - head
    second = chain.verify_new()
    assert second.ok and second.verified == added
    assert wired.scrape().value("dma_upgrade_hash_chain_verified_position") == head + added

    stream, created = scheduled()
    wired.metrics.store.append(stream, 0, [created])
    with wired.container.engine.begin() as conn:
        conn.execute(sa.update(events).where(events.c.position == head + added + 1).values(actor="mallory"))
    broken = chain.verify_new()

    assert broken.broken_at == head + added + 1
    scrape = wired.scrape()
    assert scrape.value("dma_upgrade_hash_chain_intact") == 0
    assert scrape.value("dma_upgrade_hash_chain_verified_position") == head + added


def test_a_scrape_while_the_database_is_unreachable_says_so_and_keeps_the_process_counters(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    container, metrics = serving_process(f"sqlite:///{folder / 'store.db'}")
    assert Scrape(generate_latest(metrics.registry).decode()).value("dma_upgrade_database_up") == 1

    container.engine.dispose()
    for child in folder.iterdir():
        child.unlink()
    folder.rmdir()
    folder.write_text("the database's folder is gone")  # no connection can be opened now
    scrape = Scrape(generate_latest(metrics.registry).decode())
    assert scrape.value("dma_upgrade_database_up") == 0
    assert "dma_upgrade_event_store_append_duration_seconds" in scrape.families
    assert "dma_upgrade_rollouts" not in scrape.families


def test_of_several_engine_processes_one_exports_the_fleet_so_a_sum_across_instances_counts_each_once(
        wired: Wired, db_url: str, clock: FakeClock) -> None:
    run_with_failures(wired)
    alone = wired.scrape().by("dma_upgrade_agent_upgrades", "state")
    processes = []
    for name in ("a", "b", "c"):
        container, metrics = serving_process(db_url, clock)
        leases = SqlLeases(container.engine, clock, owner=f"host/{name}", seconds=30)
        metrics.with_engine(leases, lambda: 2)
        processes.append((container, metrics, leases))
    try:
        scrapes = [Scrape(generate_latest(m.registry).decode()) for _, m, _ in processes]
        assert [s.value("dma_upgrade_fleet_exporter") for s in scrapes] == [1, 0, 0]
        summed: dict[str, float] = {}
        for scrape in scrapes:
            assert scrape.value("dma_upgrade_database_up") == 1
            for state, count in scrape.by("dma_upgrade_agent_upgrades", "state").items():
                summed[state] = summed.get(state, 0) + count
        assert summed == alone
        assert [s.series("dma_upgrade_engine_info") for s in scrapes] == [
            {frozenset({("engine_instance", f"host/{n}"), ("host", socket.gethostname()), ("pid", str(os.getpid())),
                        ("lease_seconds", "30")}): 1.0} for n in "abc"]
        assert scrapes[0].value("dma_upgrade_engine_leases_held", kind="role") == 1
        assert scrapes[1].value("dma_upgrade_engine_upgrades_driving") == 2

        processes[0][2].release_all()  # the exporter stops: the next process scraped takes the role over
        after = [Scrape(generate_latest(m.registry).decode()) for _, m, _ in processes[1:]]
        assert [s.value("dma_upgrade_fleet_exporter") for s in after] == [1, 0]
        assert after[0].by("dma_upgrade_agent_upgrades", "state") == alone
        assert after[0].value("dma_upgrade_engine_leases_claimed_total", kind="role") == 1
    finally:
        for container, _, _ in processes:
            container.close()
