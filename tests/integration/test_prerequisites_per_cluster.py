"""Prerequisites judged against the system they are for (issue 15, item 2).

On upload, each cluster (an agent in no cluster on its own) accepts the package or refuses it with the failed
checks; that is recorded on ``PackageUploaded.clusters`` and shown by ``packages list``, ``history packages`` and
the API. The upload is refused only when no system accepts it. At planning, only the targeted agents are judged."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from dma_upgrade.adapters.access.tokens import Role
from dma_upgrade.adapters.agents.simulated_gateway import modern_facts
from dma_upgrade.adapters.packages.archive import build_package
from dma_upgrade.engine.package_acceptance import ClusterAcceptance
from dma_upgrade.engine.packages import (
    CheckName,
    Comparison,
    PackageKind,
    PackageManifest,
    PackageRejected,
    PrerequisiteCheck,
)
from dma_upgrade.engine.rollout_events import PackageUploaded
from dma_upgrade.engine.versions import parse_version
from tests.conftest import FakeClock
from tests.e2e.cli import run_cli
from tests.integration.api.harness import ApiHarness
from tests.integration.rollout_harness import ACTOR, PACKAGE_VERSION, START_VERSION, AgentSpec, RolloutHarness

NATS = PrerequisiteCheck(name=CheckName.NATS, comparison=Comparison.IS_TRUE)
NO_NATS = modern_facts(START_VERSION).model_copy(update={"nats_running": False})
SOUTH_REFUSAL = "agent south-1: check nats requires true, found false"


@pytest.fixture
def two_clusters(make_harness: Callable[..., RolloutHarness]) -> RolloutHarness:
    """Cluster north (all well) and cluster south, whose agent south-1 does not run NATS; nothing uploaded."""
    return make_harness(upload=False, extra_agents=(AgentSpec("south-1", "10.0.3.1", cluster="south", facts=NO_NATS),
                                                    AgentSpec("south-2", "10.0.3.2", cluster="south")))


def test_a_package_one_cluster_refuses_is_uploaded_for_the_others(two_clusters: RolloutHarness) -> None:
    package = two_clusters.upload(prerequisites=(NATS,))

    north = ClusterAcceptance(cluster="north", agents=("dma-1", "dma-2", "dma-backup", "dma-main"))
    south = ClusterAcceptance(cluster="south", agents=("south-1", "south-2"), refusals=(SOUTH_REFUSAL,))
    assert package.clusters == (north, south)
    assert [str(c) for c in package.clusters] == ["cluster north: accepts",
                                                  f"cluster south: refuses ({SOUTH_REFUSAL})"]
    [uploaded] = [r.event for r in two_clusters.store.read_all() if isinstance(r.event, PackageUploaded)]
    assert uploaded.clusters == (north, south)


def test_planning_judges_only_the_targeted_agents(two_clusters: RolloutHarness) -> None:
    package = two_clusters.upload(prerequisites=(NATS,))
    head = two_clusters.head()
    with pytest.raises(PackageRejected, match=SOUTH_REFUSAL):
        two_clusters.start(package=package, cluster="south")
    assert two_clusters.head() == head
    assert not any("check" in w for w in two_clusters.start(package=package, names=("south-2",)).warnings)
    planned, rollout = two_clusters.start_and_run(package=package, names=("dma-1", "dma-2"))
    assert rollout.state.value == "Completed" and not any("check" in w for w in planned.warnings)


def test_a_package_no_cluster_accepts_is_refused_appending_nothing(make_harness: Callable[..., RolloutHarness]) -> None:
    h = make_harness(upload=False, facts={"dma-1": NO_NATS},
                     extra_agents=(AgentSpec("lone-1", "10.0.4.1", cluster=None, facts=NO_NATS),))
    head = h.head()
    with pytest.raises(PackageRejected) as caught:
        h.upload(prerequisites=(NATS,))
    assert caught.value.reason == ("no cluster accepts it: cluster north: agent dma-1: check nats requires true, "
                                   "found false; agent lone-1: check nats requires true, found false")
    assert h.head() == head and h.service.packages() == []


def test_an_agent_in_no_cluster_is_a_system_of_its_own(make_harness: Callable[..., RolloutHarness]) -> None:
    h = make_harness(upload=False, extra_agents=(AgentSpec("lone-1", "10.0.4.1", cluster=None, facts=NO_NATS),))
    package = h.upload(prerequisites=(NATS,))
    assert [str(c) for c in package.clusters] == [
        "cluster north: accepts", "agent lone-1: refuses (agent lone-1: check nats requires true, found false)"]


def test_a_cluster_older_than_the_refusal_accepts_a_package_it_fails(
        make_harness: Callable[..., RolloutHarness]) -> None:
    old = "10.0.0.0(CU10)"
    h = make_harness(upload=False, extra_agents=(AgentSpec("old-1", "10.0.5.1", cluster="west", version=old,
                                                           facts=modern_facts(old).model_copy(
                                                               update={"nats_running": False})),))
    package = h.upload(prerequisites=(NATS,))
    assert [str(c) for c in package.clusters] == ["cluster north: accepts", "cluster west: accepts"]


def test_a_package_with_no_agent_to_judge_it_stays_uploadable(db_url: str, clock: FakeClock, tmp_path: Path) -> None:
    api = ApiHarness(db_url, clock, tmp_path)
    try:
        response = api.upload(api.build())
        assert response.status_code == 201, response.text
        assert response.json()["clusters"] == []
    finally:
        api.close()


def test_the_cli_lists_and_the_history_shows_which_clusters_accept(two_clusters: RolloutHarness, db_url: str,
                                                                   tmp_path: Path) -> None:
    env = {"DMA_UPGRADE_DATA_DIR": str(tmp_path / "data"), "COLUMNS": "600", "DMA_UPGRADE_ACTOR": ACTOR}
    uploaded = run_cli("packages", "upload", str(two_clusters.build(prerequisites=(NATS,))), database_url=db_url,
                       env=env)
    assert uploaded.returncode == 0, uploaded.stderr
    for command in (("packages", "list"), ("history", "packages")):
        shown = run_cli(*command, database_url=db_url, env=env)
        assert shown.returncode == 0, shown.stderr
        assert "cluster north: accepts" in shown.stdout, shown.stdout
        assert f"cluster south: refuses ({SOUTH_REFUSAL})" in shown.stdout, shown.stdout


def test_the_api_lists_which_clusters_accept(db_url: str, clock: FakeClock, tmp_path: Path) -> None:
    api = ApiHarness(db_url, clock, tmp_path)
    try:
        api.add_agents()
        operator = api.client(Role.OPERATOR)
        facts = {"version": START_VERSION, "nats_running": False}
        added = operator.post("/api/v1/agents", json={"name": "south-1", "address": "10.0.3.1", "cluster": "south",
                                                      "version": START_VERSION, "facts": facts})
        assert added.status_code == 201, added.text
        path = build_package(PackageManifest.for_version(parse_version(PACKAGE_VERSION), PackageKind.FULL,
                                                         prerequisites=(NATS,)), tmp_path / "nats")
        assert api.upload(path).status_code == 201
        expected = [{"cluster": "north", "agents": ["dma-1", "dma-2"], "accepted": True, "refusals": []},
                    {"cluster": "south", "agents": ["south-1"], "accepted": False, "refusals": [SOUTH_REFUSAL]}]
        [listed] = operator.get("/api/v1/packages").json()
        assert listed["clusters"] == expected
        [history] = operator.get("/api/v1/packages/history").json()
        assert history["clusters"] == expected
    finally:
        api.close()
