"""Package history, inventory and pending-timer projections: given events, then rows."""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest
import sqlalchemy as sa

from dma_upgrade.engine.agent_events import (
    AgentFactsReported,
    AgentLeftStopped,
    AgentRegistered,
    AgentStartedManually,
    AgentVersionChanged,
    FailoverRole,
    agent_stream_id,
)
from dma_upgrade.engine.events import Event, EventMetadata, RecordedEvent
from dma_upgrade.engine.inventory import AgentRecord, clusters_on_mixed_versions
from dma_upgrade.engine.packages import AgentFacts, PackageKind, PackageManifest
from dma_upgrade.engine.rollout_events import (
    CLAIMS_STREAM,
    SETTINGS_STREAM,
    FailedAgentsRetried,
    FailoverPolicy,
    PackageUploaded,
    PackageUsed,
    PlannedAgent,
    RolloutCancelled,
    RolloutClaimed,
    RolloutCompleted,
    RolloutFailed,
    RolloutPaused,
    RolloutPlanned,
    RolloutReleased,
    RolloutResumed,
    RolloutStarted,
    SettingChanged,
    package_stream_id,
    rollout_stream_id,
)
from dma_upgrade.engine.upgrade_events import (
    AgentUpgradeCancelled,
    AgentUpgradeCompleted,
    AgentUpgradeFailed,
    AgentUpgradePlan,
    AgentUpgradeRetried,
    AgentUpgradeScheduled,
    InstallPhaseReported,
    Step,
    StepDelayed,
    StepFailed,
    StepStarted,
    StepSucceeded,
    UpgradeOptions,
)
from dma_upgrade.projections.base import Projection
from dma_upgrade.projections.catalog import all_projections
from dma_upgrade.projections.inventory import InventoryProjection
from dma_upgrade.projections.package_history import PackageHistoryProjection
from dma_upgrade.projections.tables import ColumnType, MemoryRows, Row, TableSpec
from dma_upgrade.projections.timers import PendingTimersProjection

T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
SHA = "a" * 64
OTHER_SHA = "b" * 64


class Feed:
    """Builds recorded events in global order, with per-stream versions and a clock."""

    def __init__(self) -> None:
        self.position = 0
        self.versions: dict[str, int] = {}
        self.now = T0

    def __call__(self, stream_id: str, event: Event, actor: str = "system", seconds: float = 10) -> RecordedEvent:
        self.position += 1
        self.now += timedelta(seconds=seconds)
        version = self.versions.get(stream_id, 0)
        self.versions[stream_id] = version + 1
        return RecordedEvent(position=self.position, event_id=uuid4(), stream_id=stream_id, stream_version=version,
                             event=event, metadata=EventMetadata(actor=actor), recorded_at=self.now)


def run(projection: Projection, recorded: Iterable[RecordedEvent], rows: MemoryRows | None = None) -> MemoryRows:
    rows = rows if rows is not None else MemoryRows(projection.tables)
    for event in recorded:
        projection.handle(event, rows)
    return rows


def table(rows: MemoryRows, name: str) -> list[Row]:
    return list(rows.rows(name))


def manifest(version: str = "10.4.9", build: int = 14794, cu: int | None = None,
             kind: PackageKind = PackageKind.FULL) -> PackageManifest:
    return PackageManifest(version=version, build=build, cu=cu, kind=kind)


def uploaded(sha: str = SHA, cu: int | None = None) -> PackageUploaded:
    return PackageUploaded(sha256=sha, file_name=f"DataMiner 10.4.9.0-14794 Full Upgrade-{sha[:4]}.dmupgrade",
                           size=123_456, manifest=manifest(cu=cu))


def planned(rollout_id: UUID, *, sha: str = SHA, upload_only: bool = False, start_at: datetime | None = None,
            agents: tuple[str, ...] = ("dma-1",)) -> RolloutPlanned:
    return RolloutPlanned(
        rollout_id=rollout_id, package_sha256=sha, package_version="10.4.9.0-14794", options=UpgradeOptions(),
        upload_only=upload_only, failover_policy=FailoverPolicy.SIMULTANEOUS,
        agents=tuple(PlannedAgent(name=name, address=f"10.0.0.{i + 1}", cluster="north", current_version="10.3.0.0",
                                  upgrade_id=uuid4(), plan=AgentUpgradePlan(upload_only=upload_only))
                     for i, name in enumerate(agents)),
        max_concurrent=1, max_errors=0, start_at=start_at,
    )


def scheduled_upgrade(plan: RolloutPlanned, index: int = 0) -> AgentUpgradeScheduled:
    """The ``AgentUpgradeScheduled`` that starts the upgrade of ``plan``'s agent number ``index``."""
    agent = plan.agents[index]
    return AgentUpgradeScheduled(upgrade_id=agent.upgrade_id, rollout_id=plan.rollout_id, agent=agent.name,
                                 package_sha256=plan.package_sha256, target_version=plan.package_version,
                                 plan=agent.plan)


def registered(name: str, version: str = "10.3.0.0", cluster: str | None = "north", **extra: Any) -> AgentRegistered:
    return AgentRegistered(name=name, address=f"{name}.example", cluster=cluster, version=version, **extra)


def facts(os: str = "Windows Server 2022", version: str = "10.3.0.0") -> AgentFacts:
    return AgentFacts(version=version, os=os, database="indexing", nats_running=True, ports_reachable=True)


def unrelated_events(feed: Feed) -> list[RecordedEvent]:
    """Events none of the three projections act on."""
    rollout_id = uuid4()
    upgrade = f"upgrade-{uuid4()}"
    return [
        feed(SETTINGS_STREAM, SettingChanged(key="delayed-start-seconds", value="30")),
        feed(CLAIMS_STREAM, RolloutClaimed(rollout_id=rollout_id, clusters=("north",), agents=("dma-1",))),
        feed(CLAIMS_STREAM, RolloutReleased(rollout_id=rollout_id)),
        feed(rollout_stream_id(rollout_id), RolloutPaused()),
        feed(rollout_stream_id(rollout_id), RolloutResumed()),
        feed(upgrade, AgentUpgradeScheduled(upgrade_id=uuid4(), rollout_id=rollout_id, agent="dma-1",
                                            package_sha256=SHA, target_version="10.4.9.0",
                                            plan=AgentUpgradePlan())),
        feed(upgrade, StepSucceeded(step=Step.UPLOAD, attempt=1)),
        feed(upgrade, StepFailed(step=Step.INSTALL, attempt=1, error="boom")),
        feed(upgrade, InstallPhaseReported(phase="copying", phase_index=0, phase_count=3)),
        feed(upgrade, AgentUpgradeRetried(resume_state="Uploaded")),
    ]


# --- package history -------------------------------------------------------------------------------------------


def test_an_uploaded_package_is_available_with_its_facts() -> None:
    feed = Feed()
    event = feed(package_stream_id(SHA), uploaded(cu=3), actor="alice")
    rows = run(PackageHistoryProjection(), [event])
    assert table(rows, "package_history") == [{
        "sha256": SHA, "file_name": uploaded().file_name, "version": "10.4.9.0(CU3)-14794", "cu": 3,
        "kind": "Full", "size": 123_456, "uploaded_by": "alice", "uploaded_at": event.recorded_at,
        "status": "available", "rollouts": [], "clusters": [],
    }]


def test_a_package_used_by_a_rollout_is_completed_and_lists_the_rollout() -> None:
    feed = Feed()
    rollout_id = uuid4()
    rows = run(PackageHistoryProjection(), [
        feed(package_stream_id(SHA), uploaded()),
        feed(rollout_stream_id(rollout_id), planned(rollout_id)),
    ])
    package = rows.get("package_history", (SHA,))
    assert package is not None
    assert package["status"] == "available"
    assert package["rollouts"] == [{"rollout_id": str(rollout_id), "upload_only": False, "outcome": "running"}]
    assert table(rows, "package_rollouts") == [{"rollout_id": str(rollout_id), "sha256": SHA, "upload_only": False}]

    run(PackageHistoryProjection(), [feed(package_stream_id(SHA), PackageUsed(rollout_id=rollout_id))], rows)
    package = rows.get("package_history", (SHA,))
    assert package is not None
    assert package["status"] == "completed"


def test_a_package_only_uploaded_is_uploaded_only_until_a_full_rollout_plans_it() -> None:
    feed = Feed()
    first, second = uuid4(), uuid4()
    projection = PackageHistoryProjection()
    rows = run(projection, [
        feed(package_stream_id(SHA), uploaded()),
        feed(rollout_stream_id(first), planned(first, upload_only=True)),
    ])
    assert rows.tables["package_history"][(SHA,)]["status"] == "uploaded only"

    run(projection, [feed(rollout_stream_id(second), planned(second))], rows)
    assert rows.tables["package_history"][(SHA,)]["status"] == "available"

    run(projection, [feed(package_stream_id(SHA), PackageUsed(rollout_id=second))], rows)
    assert rows.tables["package_history"][(SHA,)]["status"] == "completed"


def test_a_completed_package_stays_completed_when_uploaded_again_to_agents() -> None:
    feed = Feed()
    used, again = uuid4(), uuid4()
    rows = run(PackageHistoryProjection(), [
        feed(package_stream_id(SHA), uploaded()),
        feed(rollout_stream_id(used), planned(used)),
        feed(package_stream_id(SHA), PackageUsed(rollout_id=used)),
        feed(rollout_stream_id(again), planned(again, upload_only=True)),
    ])
    package = rows.tables["package_history"][(SHA,)]
    assert package["status"] == "completed"
    assert [r["upload_only"] for r in package["rollouts"]] == [False, True]


@pytest.mark.parametrize(("ending", "outcome"), [
    (RolloutCompleted(completed=1, cancelled=0), "completed"),
    (RolloutFailed(reason="error budget exceeded"), "failed"),
    (RolloutCancelled(reason="operator"), "cancelled"),
])
def test_a_rollout_outcome_is_recorded_on_its_package(ending: Event, outcome: str) -> None:
    feed = Feed()
    rollout_id = uuid4()
    rows = run(PackageHistoryProjection(), [
        feed(package_stream_id(SHA), uploaded()),
        feed(rollout_stream_id(rollout_id), planned(rollout_id)),
        feed(rollout_stream_id(rollout_id), RolloutStarted()),
        feed(rollout_stream_id(rollout_id), ending),
    ])
    assert rows.tables["package_history"][(SHA,)]["rollouts"] == [
        {"rollout_id": str(rollout_id), "upload_only": False, "outcome": outcome}]


def test_retrying_failed_agents_puts_the_rollout_back_to_running_and_outcomes_stay_per_rollout() -> None:
    feed = Feed()
    first, second, elsewhere = uuid4(), uuid4(), uuid4()
    projection = PackageHistoryProjection()
    rows = run(projection, [
        feed(package_stream_id(SHA), uploaded()),
        feed(package_stream_id(OTHER_SHA), uploaded(OTHER_SHA)),
        feed(rollout_stream_id(first), planned(first, upload_only=True)),
        feed(rollout_stream_id(second), planned(second, upload_only=True)),
        feed(rollout_stream_id(elsewhere), planned(elsewhere, sha=OTHER_SHA)),
        feed(rollout_stream_id(first), RolloutFailed(reason="agents failed")),
        feed(rollout_stream_id(second), RolloutCompleted(completed=1, cancelled=0)),
    ])
    outcomes = [r["outcome"] for r in rows.tables["package_history"][(SHA,)]["rollouts"]]
    assert outcomes == ["failed", "completed"]
    assert [r["outcome"] for r in rows.tables["package_history"][(OTHER_SHA,)]["rollouts"]] == ["running"]

    run(projection, [feed(rollout_stream_id(first), FailedAgentsRetried(agents=("dma-1",)))], rows)
    assert [r["outcome"] for r in rows.tables["package_history"][(SHA,)]["rollouts"]] == ["running", "completed"]
    run(projection, [feed(rollout_stream_id(first), RolloutCompleted(completed=1, cancelled=0))], rows)
    assert [r["outcome"] for r in rows.tables["package_history"][(SHA,)]["rollouts"]] == ["completed", "completed"]


def test_the_version_history_starts_at_registration_and_grows_per_version_change() -> None:
    feed = Feed()
    upgrade_id = str(uuid4())
    events = [
        feed(agent_stream_id("dma-1"), registered("dma-1", "10.3.0.0")),
        feed(agent_stream_id("dma-2"), registered("dma-2", "10.2.0.0")),
        feed(agent_stream_id("dma-1"), AgentFactsReported(facts=facts())),
        feed(agent_stream_id("dma-1"), AgentVersionChanged(version="10.4.9.0", previous_version="10.3.0.0",
                                                            upgrade_id=upgrade_id)),
        feed(agent_stream_id("dma-1"), AgentLeftStopped(upgrade_id=upgrade_id)),
        feed(agent_stream_id("dma-1"), AgentVersionChanged(version="10.5.0.0", previous_version="10.4.9.0")),
    ]
    rows = run(PackageHistoryProjection(), events)
    assert table(rows, "agent_version_history") == [
        {"agent": "dma-1", "seq": 0, "version": "10.3.0.0", "recorded_at": events[0].recorded_at,
         "upgrade_id": None},
        {"agent": "dma-1", "seq": 1, "version": "10.4.9.0", "recorded_at": events[3].recorded_at,
         "upgrade_id": upgrade_id},
        {"agent": "dma-1", "seq": 2, "version": "10.5.0.0", "recorded_at": events[5].recorded_at,
         "upgrade_id": None},
        {"agent": "dma-2", "seq": 0, "version": "10.2.0.0", "recorded_at": events[1].recorded_at,
         "upgrade_id": None},
    ]
    assert rows.tables["agent_version_heads"] == {("dma-1",): {"agent": "dma-1", "last_seq": 2},
                                                  ("dma-2",): {"agent": "dma-2", "last_seq": 0}}


def test_package_history_ignores_other_events() -> None:
    feed = Feed()
    projection = PackageHistoryProjection()
    rows = run(projection, [feed(package_stream_id(SHA), uploaded())])
    before = {name: dict(contents) for name, contents in rows.tables.items()}
    unknown = uuid4()
    run(projection, [
        *unrelated_events(feed),
        feed(agent_stream_id("dma-9"), AgentFactsReported(facts=facts())),
        feed(rollout_stream_id(unknown), RolloutCompleted(completed=0, cancelled=0)),  # rollout never planned
        feed(package_stream_id(OTHER_SHA), PackageUsed(rollout_id=unknown)),  # package never uploaded
    ], rows)
    assert rows.tables == before


# --- inventory -------------------------------------------------------------------------------------------------


def test_a_registered_agent_is_in_the_inventory() -> None:
    feed = Feed()
    event = feed(agent_stream_id("dma-1"), registered("dma-1", dataminer_id=7, failover_partner="dma-2",
                                                      failover_role=FailoverRole.MAIN))
    rows = run(InventoryProjection(), [event])
    assert table(rows, "agent_inventory") == [{
        "agent": "dma-1", "address": "dma-1.example", "cluster": "north", "version": "10.3.0.0", "dataminer_id": 7,
        "failover_partner": "dma-2", "failover_role": "main", "os": None, "stopped_by_upgrade": None,
        "registered_at": event.recorded_at, "version_changed_at": None,
    }]
    assert table(rows, "cluster_versions") == [{"cluster": "north", "version": "10.3.0.0", "agents": 1}]


def test_facts_version_changes_and_stops_update_the_agent() -> None:
    feed = Feed()
    upgrade_id = str(uuid4())
    projection = InventoryProjection()
    rows = run(projection, [
        feed(agent_stream_id("dma-1"), registered("dma-1")),
        feed(agent_stream_id("dma-1"), AgentFactsReported(facts=facts(os="Windows Server 2019"))),
    ])
    assert rows.tables["agent_inventory"][("dma-1",)]["os"] == "Windows Server 2019"

    changed = feed(agent_stream_id("dma-1"), AgentVersionChanged(version="10.4.9.0", previous_version="10.3.0.0",
                                                                  upgrade_id=upgrade_id))
    run(projection, [changed, feed(agent_stream_id("dma-1"), AgentLeftStopped(upgrade_id=upgrade_id))], rows)
    agent = rows.tables["agent_inventory"][("dma-1",)]
    assert (agent["version"], agent["version_changed_at"]) == ("10.4.9.0", changed.recorded_at)
    assert agent["stopped_by_upgrade"] == upgrade_id

    run(projection, [feed(agent_stream_id("dma-1"), AgentStartedManually(upgrade_id=upgrade_id))], rows)
    assert rows.tables["agent_inventory"][("dma-1",)]["stopped_by_upgrade"] is None


def test_cluster_version_counts_stay_exact_as_versions_change() -> None:
    feed = Feed()
    projection = InventoryProjection()
    rows = run(projection, [
        feed(agent_stream_id("a"), registered("a", "10.3.0.0")),
        feed(agent_stream_id("b"), registered("b", "10.3.0.0")),
        feed(agent_stream_id("c"), registered("c", "10.3.0.0")),
        feed(agent_stream_id("s"), registered("s", "10.2.0.0", cluster="south")),
        feed(agent_stream_id("loner"), registered("loner", "9.6.0.0", cluster=None)),
    ])
    assert table(rows, "cluster_versions") == [
        {"cluster": "north", "version": "10.3.0.0", "agents": 3},
        {"cluster": "south", "version": "10.2.0.0", "agents": 1},
    ]

    run(projection, [feed(agent_stream_id("a"), AgentVersionChanged(version="10.4.9.0",
                                                                     previous_version="10.3.0.0"))], rows)
    assert table(rows, "cluster_versions") == [
        {"cluster": "north", "version": "10.3.0.0", "agents": 2},
        {"cluster": "north", "version": "10.4.9.0", "agents": 1},
        {"cluster": "south", "version": "10.2.0.0", "agents": 1},
    ]

    run(projection, [
        feed(agent_stream_id(name), AgentVersionChanged(version="10.4.9.0", previous_version="10.3.0.0"))
        for name in ("b", "c")
    ] + [
        feed(agent_stream_id("s"), AgentVersionChanged(version="10.2.0.0", previous_version="10.2.0.0")),
        feed(agent_stream_id("loner"), AgentVersionChanged(version="10.0.0.0", previous_version="9.6.0.0")),
    ], rows)
    assert table(rows, "cluster_versions") == [
        {"cluster": "north", "version": "10.4.9.0", "agents": 3},
        {"cluster": "south", "version": "10.2.0.0", "agents": 1},
    ]
    assert rows.tables["agent_inventory"][("loner",)]["version"] == "10.0.0.0"


def test_clusters_on_mixed_versions_are_clusters_with_more_than_one_row_as_the_engine_says() -> None:
    feed = Feed()
    events = [
        feed(agent_stream_id("a"), registered("a", "10.3.0.0")),
        feed(agent_stream_id("b"), registered("b", "10.3.0.0")),
        feed(agent_stream_id("s"), registered("s", "10.2.0.0", cluster="south")),
        feed(agent_stream_id("a"), AgentVersionChanged(version="10.4.9.0", previous_version="10.3.0.0")),
    ]
    rows = run(InventoryProjection(), events)
    mixed: dict[str, list[str]] = {}
    for row in rows.rows("cluster_versions"):
        mixed.setdefault(row["cluster"], []).append(row["version"])
    from_rows = {cluster: sorted(versions) for cluster, versions in mixed.items() if len(versions) > 1}
    records = [AgentRecord(name=r["agent"], address=r["address"], cluster=r["cluster"], version=r["version"])
               for r in rows.rows("agent_inventory")]
    assert from_rows == clusters_on_mixed_versions(records) == {"north": ["10.3.0.0", "10.4.9.0"]}


def test_notations_of_one_version_are_one_cluster_version_row_and_no_mixed_warning() -> None:
    feed = Feed()
    events = [
        feed(agent_stream_id("a"), registered("a", "10.4.0.0-14112")),
        feed(agent_stream_id("b"), registered("b", "10.4.0.0(CU0)-14112")),
        feed(agent_stream_id("c"), registered("c", "10.4.0")),
        feed(agent_stream_id("d"), registered("d", "10.4.0.0", cluster="south")),
        feed(agent_stream_id("e"), registered("e", "10.10.0", cluster="south")),
        feed(agent_stream_id("f"), registered("f", "10.9.0", cluster="south")),
    ]
    projection = InventoryProjection()
    rows = run(projection, events)
    assert table(rows, "cluster_versions") == [
        {"cluster": "north", "version": "10.4.0.0", "agents": 1},
        {"cluster": "north", "version": "10.4.0.0-14112", "agents": 2},
        {"cluster": "south", "version": "10.10.0.0", "agents": 1},
        {"cluster": "south", "version": "10.4.0.0", "agents": 1},
        {"cluster": "south", "version": "10.9.0.0", "agents": 1},
    ]
    records = [AgentRecord(name=r["agent"], address=r["address"], cluster=r["cluster"], version=r["version"])
               for r in rows.rows("agent_inventory")]
    assert clusters_on_mixed_versions(records) == {"north": ["10.4.0", "10.4.0.0-14112"],
                                                   "south": ["10.4.0.0", "10.9.0", "10.10.0"]}

    run(projection, [feed(agent_stream_id("c"), AgentVersionChanged(version="10.4.0.0(CU0)-14112",
                                                                     previous_version="10.4.0"))], rows)
    assert [row for row in table(rows, "cluster_versions") if row["cluster"] == "north"] == [
        {"cluster": "north", "version": "10.4.0.0-14112", "agents": 3}]
    records = [AgentRecord(name=r["agent"], address=r["address"], cluster=r["cluster"], version=r["version"])
               for r in rows.rows("agent_inventory")]
    assert "north" not in clusters_on_mixed_versions(records)


def test_inventory_ignores_other_events() -> None:
    feed = Feed()
    projection = InventoryProjection()
    rows = run(projection, [feed(agent_stream_id("dma-1"), registered("dma-1"))])
    before = {name: dict(contents) for name, contents in rows.tables.items()}
    rollout_id = uuid4()
    run(projection, [
        *unrelated_events(feed),
        feed(package_stream_id(SHA), uploaded()),
        feed(rollout_stream_id(rollout_id), planned(rollout_id)),
        feed(agent_stream_id("ghost"), AgentVersionChanged(version="10.4.9.0", previous_version="10.3.0.0")),
        feed(agent_stream_id("ghost"), AgentFactsReported(facts=facts())),
    ], rows)
    assert rows.tables == before


# --- pending timers --------------------------------------------------------------------------------------------


def upgrade_stream() -> str:
    return f"upgrade-{uuid4()}"


def test_a_scheduled_rollout_arms_a_start_timer_and_starting_disarms_it() -> None:
    feed = Feed()
    rollout_id, unscheduled = uuid4(), uuid4()
    start_at = T0 + timedelta(hours=2)
    stream = rollout_stream_id(rollout_id)
    projection = PendingTimersProjection()
    plan = feed(stream, planned(rollout_id, start_at=start_at))
    rows = run(projection, [plan, feed(rollout_stream_id(unscheduled), planned(unscheduled))])
    assert table(rows, "pending_timers") == [{
        "timer_id": f"rollout-{rollout_id}:start", "kind": "scheduled-start", "due_at": start_at,
        "stream_id": stream, "step": None, "armed_at": plan.recorded_at,
    }]

    run(projection, [feed(stream, RolloutStarted())], rows)
    assert table(rows, "pending_timers") == []
    assert table(rows, "pending_timer_streams") == []


def test_cancelling_a_scheduled_rollout_disarms_its_start_timer_only() -> None:
    feed = Feed()
    cancelled, kept = uuid4(), uuid4()
    rows = run(PendingTimersProjection(), [
        feed(rollout_stream_id(cancelled), planned(cancelled, start_at=T0 + timedelta(hours=1))),
        feed(rollout_stream_id(kept), planned(kept, start_at=T0 + timedelta(hours=3))),
        feed(rollout_stream_id(cancelled), RolloutCancelled(reason="operator")),
    ])
    assert [row["timer_id"] for row in rows.rows("pending_timers")] == [f"rollout-{kept}:start"]


@pytest.mark.parametrize(("reason", "kind"), [("delayed start", "delayed-start"), ("retry backoff", "retry-backoff")])
def test_a_delayed_step_arms_a_timer_of_its_kind(reason: str, kind: str) -> None:
    feed = Feed()
    stream = upgrade_stream()
    due = T0 + timedelta(seconds=30)
    delayed = feed(stream, StepDelayed(step=Step.START, due_at=due, reason=reason))
    rows = run(PendingTimersProjection(), [delayed])
    assert table(rows, "pending_timers") == [{
        "timer_id": f"{stream}:start", "kind": kind, "due_at": due, "stream_id": stream, "step": "start",
        "armed_at": delayed.recorded_at,
    }]
    assert table(rows, "pending_timer_streams") == [{"stream_id": stream, "timer_id": f"{stream}:start"}]


@pytest.mark.parametrize("ending", [
    StepStarted(step=Step.INSTALL, attempt=2, idempotency_key="k"),
    AgentUpgradeFailed(step=Step.INSTALL, reason="retries exhausted"),
    AgentUpgradeCancelled(reason="rollout cancelled"),
    AgentUpgradeCompleted(version_after="10.4.9.0"),
])
def test_a_step_timer_is_disarmed_by_what_ends_the_wait(ending: Event) -> None:
    feed = Feed()
    stream, other = upgrade_stream(), upgrade_stream()
    rows = run(PendingTimersProjection(), [
        feed(stream, StepDelayed(step=Step.INSTALL, due_at=T0 + timedelta(seconds=5), reason="retry backoff")),
        feed(other, StepDelayed(step=Step.START, due_at=T0 + timedelta(seconds=30), reason="delayed start")),
        feed(stream, ending),
    ])
    assert [row["timer_id"] for row in rows.rows("pending_timers")] == [f"{other}:start"]
    assert [row["stream_id"] for row in rows.rows("pending_timer_streams")] == [other]


def test_a_new_delay_in_a_stream_replaces_its_pending_timer() -> None:
    feed = Feed()
    stream = upgrade_stream()
    later = T0 + timedelta(minutes=5)
    rows = run(PendingTimersProjection(), [
        feed(stream, StepDelayed(step=Step.INSTALL, due_at=T0 + timedelta(seconds=5), reason="retry backoff")),
        feed(stream, StepDelayed(step=Step.START, due_at=later, reason="delayed start")),
    ])
    assert [(row["timer_id"], row["kind"], row["due_at"]) for row in rows.rows("pending_timers")] == [
        (f"{stream}:start", "delayed-start", later)]


def test_a_timer_is_armed_again_after_being_disarmed() -> None:
    feed = Feed()
    stream = upgrade_stream()
    rows = run(PendingTimersProjection(), [
        feed(stream, StepDelayed(step=Step.INSTALL, due_at=T0, reason="retry backoff")),
        feed(stream, StepStarted(step=Step.INSTALL, attempt=2, idempotency_key="k2")),
        feed(stream, StepFailed(step=Step.INSTALL, attempt=2, error="boom")),
        feed(stream, StepDelayed(step=Step.INSTALL, due_at=T0 + timedelta(seconds=10), reason="retry backoff")),
    ])
    assert [(row["timer_id"], row["due_at"]) for row in rows.rows("pending_timers")] == [
        (f"{stream}:install", T0 + timedelta(seconds=10))]


def test_pending_timers_ignore_other_events() -> None:
    feed = Feed()
    projection = PendingTimersProjection()
    rollout_id = uuid4()
    stream = upgrade_stream()
    rows = run(projection, [
        feed(rollout_stream_id(rollout_id), planned(rollout_id, start_at=T0 + timedelta(hours=1))),
        feed(stream, StepDelayed(step=Step.START, due_at=T0 + timedelta(seconds=30), reason="delayed start")),
    ])
    before = {name: dict(contents) for name, contents in rows.tables.items()}
    run(projection, [
        *unrelated_events(feed),
        feed(rollout_stream_id(rollout_id), RolloutPaused()),
        feed(rollout_stream_id(rollout_id), FailedAgentsRetried(agents=())),
        feed(stream, InstallPhaseReported(phase="x", phase_index=0, phase_count=1)),
        feed(stream, AgentUpgradeRetried(resume_state="Uploaded")),
        feed(package_stream_id(SHA), uploaded()),
        feed(agent_stream_id("dma-1"), registered("dma-1")),
        feed(agent_stream_id("dma-1"), AgentVersionChanged(version="10.4.9.0", previous_version="10.3.0.0")),
    ], rows)
    assert rows.tables == before


# --- every projection ------------------------------------------------------------------------------------------


def a_busy_history() -> list[RecordedEvent]:
    """Every kind of event the three projections act on, and some they do not."""
    feed = Feed()
    first, second = uuid4(), uuid4()
    upgrade = upgrade_stream()
    upgrade_id = upgrade.removeprefix("upgrade-")
    return [
        feed(package_stream_id(SHA), uploaded(), actor="alice"),
        feed(agent_stream_id("a"), registered("a")),
        feed(agent_stream_id("b"), registered("b", failover_partner="a", failover_role=FailoverRole.BACKUP)),
        feed(agent_stream_id("a"), AgentFactsReported(facts=facts())),
        feed(rollout_stream_id(first), planned(first, upload_only=True, start_at=T0 + timedelta(hours=1))),
        feed(rollout_stream_id(first), RolloutStarted()),
        feed(rollout_stream_id(first), RolloutCompleted(completed=2, cancelled=0)),
        feed(rollout_stream_id(second), planned(second, agents=("a", "b"))),
        feed(package_stream_id(SHA), PackageUsed(rollout_id=second)),
        feed(rollout_stream_id(second), RolloutStarted()),
        feed(upgrade, StepDelayed(step=Step.INSTALL, due_at=T0 + timedelta(hours=2), reason="retry backoff")),
        feed(upgrade, StepStarted(step=Step.INSTALL, attempt=2, idempotency_key="k")),
        feed(upgrade, StepDelayed(step=Step.START, due_at=T0 + timedelta(hours=3), reason="delayed start")),
        feed(agent_stream_id("a"), AgentVersionChanged(version="10.4.9.0", previous_version="10.3.0.0",
                                                        upgrade_id=upgrade_id)),
        feed(agent_stream_id("a"), AgentLeftStopped(upgrade_id=upgrade_id)),
        *unrelated_events(feed),
        feed(rollout_stream_id(second), RolloutFailed(reason="agents failed")),
    ]


@pytest.mark.parametrize("projection", [PackageHistoryProjection(), InventoryProjection(),
                                        PendingTimersProjection()], ids=lambda p: p.name)
def test_the_same_events_give_the_same_tables(projection: Projection) -> None:
    events = a_busy_history()
    first = run(projection, events)
    second = run(type(projection)(), events)
    assert first.tables == second.tables
    assert any(first.tables.values())


@pytest.mark.parametrize("projection", all_projections(), ids=lambda p: p.name)
def test_events_outside_a_projections_event_types_change_nothing(projection: Projection) -> None:
    events = a_busy_history()
    taken = [recorded for recorded in events if type(recorded.event) in projection.event_types]
    assert len(taken) < len(events)
    assert run(type(projection)(), taken).tables == run(projection, events).tables


def test_the_catalog_runs_the_new_projections_after_progress() -> None:
    assert [p.name for p in all_projections()] == ["progress", "package_history", "inventory", "pending_timers"]
    names = [spec.name for p in all_projections() for spec in p.tables]
    assert len(names) == len(set(names))


# --- the migration creates exactly the tables the projections describe ----------------------------------------------


class RecordingOp:
    """Stands in for ``alembic.op``: remembers what a migration creates and drops."""

    def __init__(self) -> None:
        self.created: dict[str, tuple[sa.Column[Any], ...]] = {}
        self.dropped: list[str] = []
        self.indexes: list[str] = []
        self.dropped_indexes: list[str] = []

    def create_table(self, name: str, *columns: sa.Column[Any]) -> None:
        self.created[name] = columns

    def drop_table(self, name: str) -> None:
        self.dropped.append(name)

    def create_index(self, name: str, *_: Any, **__: Any) -> None:
        self.indexes.append(name)

    def drop_index(self, name: str, *_: Any, **__: Any) -> None:
        self.dropped_indexes.append(name)


_SQL_TYPES = {ColumnType.TEXT: sa.Text, ColumnType.INT: sa.BigInteger, ColumnType.FLOAT: sa.Float,
              ColumnType.BOOL: sa.Boolean, ColumnType.TIMESTAMP: sa.DateTime, ColumnType.JSON: sa.Text}


def _specs() -> list[TableSpec]:
    return [spec for p in (PackageHistoryProjection(), InventoryProjection(), PendingTimersProjection())
            for spec in p.tables]


_ADDED_LATER = {"package_history": ("clusters",)}
"""Columns a later migration adds (0010_package_acceptance)."""


def test_migration_0003_creates_every_table_exactly_as_its_spec(monkeypatch: pytest.MonkeyPatch) -> None:
    migration = importlib.import_module("dma_upgrade.adapters.sql.migrations.versions.0003_read_models")
    assert (migration.revision, migration.down_revision) == ("0003_read_models", "0002_progress")
    op = RecordingOp()
    monkeypatch.setattr(migration, "op", op)
    migration.upgrade()
    assert sorted(op.created) == sorted(spec.name for spec in _specs())
    for spec in _specs():
        columns = op.created[spec.name]
        expected = [(name, kind) for name, kind in spec.columns if name not in _ADDED_LATER.get(spec.name, ())]
        assert [c.name for c in columns] == [name for name, _ in expected], spec.name
        for column, (name, kind) in zip(columns, expected, strict=True):
            assert type(column.type) is _SQL_TYPES[kind], (spec.name, name)
            if kind is ColumnType.TIMESTAMP:
                assert column.type.timezone, (spec.name, name)  # type: ignore[attr-defined]
            assert column.primary_key == (name in spec.key), (spec.name, name)
            assert column.nullable == (name not in spec.key), (spec.name, name)

    migration.downgrade()
    assert sorted(op.dropped) == sorted(op.created)
    assert sorted(op.dropped_indexes) == sorted(op.indexes)
