"""A package is completed once an agent begins installing it, and a failed or cancelled rollout can be finished
with it (``continue``), on SQLite and PostgreSQL: real store, simulated agents, a fake clock."""

from __future__ import annotations

from collections.abc import Callable
from uuid import UUID

import pytest
from apscheduler.schedulers.background import BackgroundScheduler

from dma_upgrade.adapters.runtime.engine_process import planned_resumptions
from dma_upgrade.adapters.sql.projection_runner import ProjectionRunner, read_rows
from dma_upgrade.engine.commands import CancelRollout, ContinueRollout
from dma_upgrade.engine.errors import Conflict, InvalidTransition, NotFound
from dma_upgrade.engine.rollout import RolloutState
from dma_upgrade.engine.rollout_events import (
    PackageUsed,
    RolloutClaimed,
    RolloutContinued,
    package_stream_id,
    rollout_stream_id,
)
from dma_upgrade.engine.service import AgentSelection, RolloutSpec
from dma_upgrade.engine.upgrade_events import AgentUpgradeRetried, Step, StepStarted
from dma_upgrade.engine.upgrade_machine import UpgradeState
from dma_upgrade.projections.catalog import all_projections
from tests.conftest import FakeClock
from tests.integration.rollout_harness import (
    ACTOR,
    BACKUP,
    MAIN,
    PACKAGE_VERSION,
    START_VERSION,
    AgentSpec,
    RolloutHarness,
)
from tests.integration.test_engine_process import engine_process, join_runners

FULL = [Step.UPLOAD, Step.STOP_SNMP, Step.INSTALL, Step.START]


class _Canceller:
    """An operator who cancels every running rollout while an agent performs a step, until disarmed."""

    def __init__(self) -> None:
        self.harness: RolloutHarness | None = None
        self.armed = True

    def __call__(self, _: float) -> None:
        if not self.armed or self.harness is None:
            return
        for rollout in self.harness.service.rollouts():
            if rollout.state is RolloutState.RUNNING:
                self.harness.service.control(CancelRollout(rollout.plan.rollout_id), actor=ACTOR)


def _cancelling_on(make_harness: Callable[..., RolloutHarness], step: Step) -> tuple[RolloutHarness, _Canceller]:
    """A harness whose operator cancels the running rollout while the first agent performs ``step``."""
    canceller = _Canceller()
    canceller.harness = make_harness(step_seconds={step: 0.001}, sleeper=canceller)
    return canceller.harness, canceller


def _package_used_events(h: RolloutHarness) -> list[PackageUsed]:
    assert h.package is not None
    return [r.event for r in h.store.read_stream(package_stream_id(h.package.sha256))
            if isinstance(r.event, PackageUsed)]


def test_planning_a_rollout_leaves_its_package_available(harness: RolloutHarness) -> None:
    planned = harness.start()

    assert harness.service.package(planned.package_sha256).status == "available"
    harness.service.control(CancelRollout(planned.rollout_id), actor=ACTOR)
    assert harness.service.package(planned.package_sha256).status == "available"
    assert harness.start().agents  # the same package plans another rollout


def test_the_first_install_marks_the_package_used_once_by_its_rollout_and_agent(harness: RolloutHarness) -> None:
    planned, rollout = harness.start_and_run(names=("dma-1", "dma-2"), max_concurrent="1")

    assert rollout.state is RolloutState.COMPLETED
    assert harness.service.package(planned.package_sha256).used_by == planned.rollout_id
    assert _package_used_events(harness) == [PackageUsed(rollout_id=planned.rollout_id,
                                                         agent=planned.agents[0].name)]
    positions = {type(r.event): r.position for r in harness.store.read_all()
                 if isinstance(r.event, PackageUsed)
                 or (isinstance(r.event, StepStarted) and r.event.step is Step.INSTALL)}
    assert positions[PackageUsed] < positions[StepStarted]  # marked before the first install intent


def test_an_upload_only_rollout_leaves_the_package_available(harness: RolloutHarness) -> None:
    planned, rollout = harness.start_and_run(names=("dma-1",), upload_only=True)

    assert rollout.state is RolloutState.COMPLETED
    assert harness.service.package(planned.package_sha256).used_by is None


def test_a_rollout_cancelled_before_any_install_leaves_the_package_available_and_can_be_continued(
        make_harness: Callable[..., RolloutHarness]) -> None:
    h, canceller = _cancelling_on(make_harness, Step.UPLOAD)
    planned, rollout = h.start_and_run(names=("dma-1", "dma-2"), max_concurrent="1")
    assert rollout.state is RolloutState.CANCELLED
    assert h.service.package(planned.package_sha256).status == "available"
    canceller.armed = False

    continued = h.service.control(ContinueRollout(planned.rollout_id), actor=ACTOR)
    assert continued.state is RolloutState.RUNNING
    assert h.run(planned.rollout_id).state is RolloutState.COMPLETED
    assert {a.version for a in h.service.agents() if a.name in ("dma-1", "dma-2")} == {PACKAGE_VERSION}
    assert h.service.package(planned.package_sha256).used_by == planned.rollout_id


def test_continue_finishes_a_rollout_cancelled_after_one_agent_installed(
        make_harness: Callable[..., RolloutHarness]) -> None:
    h, canceller = _cancelling_on(make_harness, Step.INSTALL)
    planned, rollout = h.start_and_run(max_concurrent="1")
    first, rest = planned.agents[0].name, [a.name for a in planned.agents[1:]]
    assert rollout.state is RolloutState.CANCELLED
    assert h.upgrade(planned, first).state is UpgradeState.COMPLETED
    assert h.service.package(planned.package_sha256).status == "completed"
    with pytest.raises(Conflict, match="is completed"):
        h.start()  # a new rollout with the package is refused: continue the one that used it
    canceller.armed = False

    h.service.continue_rollout(planned.rollout_id, actor="bob")
    ended = h.run(planned.rollout_id)

    assert ended.state is RolloutState.COMPLETED
    assert {a.version for a in h.service.agents()} == {PACKAGE_VERSION}  # the cluster is on one version
    assert h.steps_of(first) == FULL  # the completed agent is not upgraded again
    for name in rest:
        assert h.upgrade(planned, name).state is UpgradeState.COMPLETED  # the same upgrade, taken up again
        assert any(isinstance(r.event, AgentUpgradeRetried) for r in h.upgrade_events(planned, name))
    continued = [(r.event.agents, r.metadata.actor) for r in h.store.read_stream(rollout_stream_id(planned.rollout_id))
                 if isinstance(r.event, RolloutContinued)]
    assert continued == [(tuple(rest), "bob")]
    h.start(package=h.upload("10.4.10.0-14900"))  # the cluster was released at the end


def test_a_continued_failover_pair_upgrades_its_backup_before_its_main(
        make_harness: Callable[..., RolloutHarness]) -> None:
    h, canceller = _cancelling_on(make_harness, Step.UPLOAD)
    planned, rollout = h.start_and_run(names=(MAIN, BACKUP), failover_policy="backup-first", max_concurrent="2")
    assert rollout.state is RolloutState.CANCELLED
    canceller.armed = False

    h.service.continue_rollout(planned.rollout_id, actor=ACTOR)
    assert h.run(planned.rollout_id).state is RolloutState.COMPLETED

    journal = h.journal_of(MAIN, BACKUP)
    assert journal.index((BACKUP, Step.SWITCH_OVER)) < journal.index((MAIN, Step.STOP_SNMP))
    assert h.gateway.agent(BACKUP).active and not h.gateway.agent(MAIN).active


def test_continue_finishes_a_failed_rollout(harness: RolloutHarness) -> None:
    harness.gateway.fail("dma-1", Step.INSTALL, times=None)
    planned, rollout = harness.start_and_run(names=("dma-1", "dma-2"))
    assert rollout.state is RolloutState.FAILED
    harness.gateway.heal("dma-1")

    harness.service.control(ContinueRollout(planned.rollout_id), actor=ACTOR)

    assert harness.run(planned.rollout_id).state is RolloutState.COMPLETED
    assert harness.service.agent("dma-1").version == PACKAGE_VERSION


def _refused_without_appending(h: RolloutHarness, rollout_id: UUID, error: type[Exception], match: str) -> None:
    head = h.head()
    with pytest.raises(error, match=match):
        h.service.continue_rollout(rollout_id, actor=ACTOR)
    assert h.head() == head


def test_continuing_a_planned_running_or_completed_rollout_is_refused(harness: RolloutHarness) -> None:
    planned = harness.start(names=("dma-1",))
    _refused_without_appending(harness, planned.rollout_id, InvalidTransition,
                               "only a failed or cancelled rollout can be continued")
    harness.run(planned.rollout_id)
    _refused_without_appending(harness, planned.rollout_id, InvalidTransition,
                               "only a failed or cancelled rollout can be continued")
    with pytest.raises(NotFound):
        harness.service.continue_rollout(UUID(int=7), actor=ACTOR)


def test_continuing_a_rollout_whose_package_another_rollout_used_is_refused(harness: RolloutHarness) -> None:
    first = harness.start(names=("dma-1",))
    harness.service.control(CancelRollout(first.rollout_id), actor=ACTOR)
    second, _ = harness.start_and_run(names=("dma-1",))

    _refused_without_appending(harness, first.rollout_id, Conflict, f"was used by rollout {second.rollout_id}")


def test_continuing_a_rollout_whose_cluster_another_rollout_holds_is_refused(harness: RolloutHarness) -> None:
    first = harness.start(names=("dma-1",))
    harness.service.control(CancelRollout(first.rollout_id), actor=ACTOR)
    harness.start(names=("dma-1",), package=harness.upload("10.4.10.0-14900"))

    _refused_without_appending(harness, first.rollout_id, Conflict, "already has an active rollout")


def test_continuing_agents_another_rollout_upgraded_since_is_refused(harness: RolloutHarness) -> None:
    first = harness.start(names=("dma-1",))
    harness.service.control(CancelRollout(first.rollout_id), actor=ACTOR)
    harness.start_and_run(names=("dma-1",), package=harness.upload("10.4.10.0-14900"))

    _refused_without_appending(harness, first.rollout_id, Conflict,
                               f"agent dma-1 runs 10.4.10.0-14900 since rollout {first.rollout_id} planned it")


def test_of_two_rollouts_planned_with_one_package_the_second_to_install_fails(
        make_harness: Callable[..., RolloutHarness]) -> None:
    h = make_harness(extra_agents=[AgentSpec("dma-s1", "10.0.1.1", cluster="south")])
    first = h.start(names=("dma-1",))
    second = h.start(names=("dma-s1",))
    assert h.run(first.rollout_id).state is RolloutState.COMPLETED

    assert h.run(second.rollout_id).state is RolloutState.FAILED
    upgrade = h.upgrade(second, "dma-s1")
    assert upgrade.state is UpgradeState.FAILED
    assert f"was used by rollout {first.rollout_id}" in (upgrade.last_error or "")
    assert h.steps_of("dma-s1") == [Step.UPLOAD, Step.STOP_SNMP]  # no install was sent
    assert h.service.agent("dma-s1").version == START_VERSION


def test_several_clusters_make_one_rollout_and_are_claimed_together(
        make_harness: Callable[..., RolloutHarness]) -> None:
    h = make_harness(extra_agents=[AgentSpec("dma-s1", "10.0.1.1", cluster="south")])
    assert h.package is not None
    spec = RolloutSpec(package=h.package.sha256, selection=AgentSelection(clusters=("north", "south")))

    planned = h.service.start_rollout(spec, actor=ACTOR)

    assert {a.cluster for a in planned.agents} == {"north", "south"}
    assert len(planned.agents) == len(h.service.agents())
    claims = [r.event for r in h.store.read_stream("rollout-claims") if isinstance(r.event, RolloutClaimed)]
    assert claims[-1].clusters == ("north", "south")


def test_an_unknown_cluster_among_several_is_refused_by_name(harness: RolloutHarness) -> None:
    assert harness.package is not None
    spec = RolloutSpec(package=harness.package.sha256,
                       selection=AgentSelection(cluster="north", clusters=("east", "west")))
    head = harness.head()

    with pytest.raises(NotFound, match="unknown clusters 'east', 'west'"):
        harness.service.start_rollout(spec, actor=ACTOR)
    assert harness.head() == head


def test_the_serving_engine_and_recover_take_up_a_continued_rollout(
        make_harness: Callable[..., RolloutHarness]) -> None:
    h, canceller = _cancelling_on(make_harness, Step.INSTALL)
    planned, _ = h.start_and_run(names=("dma-1", "dma-2"), max_concurrent="1")
    canceller.armed = False
    h.service.continue_rollout(planned.rollout_id, actor=ACTOR)

    assert [r.plan.rollout_id for r, _ in planned_resumptions(h.service)] == [planned.rollout_id]
    scheduler = BackgroundScheduler(timezone="UTC")
    scheduler.start(paused=True)
    try:
        process = engine_process(h, scheduler)
        process.tick()
        join_runners(process, planned.rollout_id)
    finally:
        scheduler.shutdown(wait=False)

    assert h.service.rollout(planned.rollout_id).state is RolloutState.COMPLETED
    assert h.service.agent("dma-2").version == PACKAGE_VERSION


def test_the_tables_of_a_continued_rollout_equal_a_full_rebuild(harness: RolloutHarness, clock: FakeClock) -> None:
    runner = ProjectionRunner(harness.engine, harness.store, clock, all_projections(), batch_size=5)
    cancelled = harness.start(names=("dma-1", "dma-2"))
    harness.service.control(CancelRollout(cancelled.rollout_id), actor=ACTOR)
    runner.catch_up()
    harness.service.continue_rollout(cancelled.rollout_id, actor="bob")
    assert harness.run(cancelled.rollout_id).state is RolloutState.COMPLETED
    runner.catch_up()

    live = {spec.name: read_rows(harness.engine, spec) for p in runner.projections.values() for spec in p.tables}
    rollout = next(r for r in live["progress_rollouts"] if r["rollout_id"] == str(cancelled.rollout_id))
    assert (rollout["state"], rollout["completed"], rollout["cancelled"], rollout["waiting"]) == ("Completed", 2, 0, 0)
    [entry] = next(p for p in live["package_history"] if p["sha256"] == cancelled.package_sha256)["rollouts"]
    assert (entry["outcome"], entry["used_by"]) == ("completed", "engine")
    assert entry["used_agent"] in ("dma-1", "dma-2")
    assert [c["by"] for c in entry["continued"]] == ["bob"]
    runner.rebuild()
    rebuilt = {spec.name: read_rows(harness.engine, spec) for p in runner.projections.values() for spec in p.tables}
    assert {name: sorted(map(repr, rows)) for name, rows in rebuilt.items()} == \
        {name: sorted(map(repr, rows)) for name, rows in live.items()}
