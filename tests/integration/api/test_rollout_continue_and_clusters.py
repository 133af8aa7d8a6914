"""``POST /api/v1/rollouts/{id}/continue`` and rollouts of several clusters, through a real server."""

from __future__ import annotations

from typing import Any

import httpx

from dma_upgrade.adapters.access.tokens import Role
from dma_upgrade.adapters.agents.simulated_gateway import SimulatedAgent
from dma_upgrade.engine.upgrade_events import Step
from tests.integration.api.harness import ACTORS, ApiHarness
from tests.integration.rollout_harness import START_VERSION

SOUTH = SimulatedAgent(name="dma-s1", address="10.0.1.1", cluster="south", version=START_VERSION)


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def refused(api: ApiHarness, call: httpx.Response, status: int, error: str, head: int) -> str:
    """``call`` was refused with ``status`` and a one-line ``error``, and nothing was appended."""
    assert call.status_code == status, call.text
    body = call.json()
    assert body["error"] == error and "\n" not in body["detail"], body
    assert api.head() == head
    return str(body["detail"])


def test_continue_finishes_a_failed_rollout_and_the_package_history_shows_who(api: ApiHarness) -> None:
    api.gateway.fail("dma-1", Step.INSTALL, times=None)
    rollout_id = api.start_rollout()["rollout_id"]
    assert api.run(rollout_id).state == "Failed"
    api.gateway.heal("dma-1")
    head = api.head()
    refused(api, api.client(Role.VIEWER).post(f"/api/v1/rollouts/{rollout_id}/continue"), 403, "forbidden", head)

    continued = ok(api.client(Role.OPERATOR).post(f"/api/v1/rollouts/{rollout_id}/continue"))

    assert continued["state"] == "Running"
    assert api.run(rollout_id).state == "Completed"
    package = api.service.packages()[-1]
    [entry] = [rollout for rollout in
               next(p for p in ok(api.client(Role.VIEWER).get("/api/v1/packages/history"))
                    if p["sha256"] == package.sha256)["rollouts"]]
    assert entry["rollout_id"] == rollout_id and entry["outcome"] == "completed"
    assert entry["used_agent"] in ("dma-1", "dma-2") and entry["used_by"]
    assert [c["by"] for c in entry["continued"]] == [ACTORS[Role.OPERATOR]]


def test_continuing_a_completed_or_unknown_rollout_is_refused_in_one_line(api: ApiHarness) -> None:
    rollout_id = api.start_rollout()["rollout_id"]
    operator = api.client(Role.OPERATOR)
    head = api.head()
    detail = refused(api, operator.post(f"/api/v1/rollouts/{rollout_id}/continue"), 409, "illegal_transition", head)
    assert "only a failed or cancelled rollout can be continued" in detail
    assert api.run(rollout_id).state == "Completed"
    head = api.head()
    detail = refused(api, operator.post(f"/api/v1/rollouts/{rollout_id}/continue"), 409, "illegal_transition", head)
    assert "only a failed or cancelled rollout" in detail
    refused(api, operator.post("/api/v1/rollouts/00000000-0000-0000-0000-000000000007/continue"), 404,
            "not_found", head)


def test_a_rollout_takes_every_cluster_named(api: ApiHarness) -> None:
    api.add_agents(SOUTH)
    viewer = api.client(Role.VIEWER)
    package = api.service.packages()[-1].sha256

    plan = ok(viewer.post("/api/v1/rollouts/plan", json={"package": package, "clusters": ["north", "south"]}))
    both = ok(viewer.post("/api/v1/rollouts/plan", json={"package": package, "cluster": "north",
                                                          "clusters": ["south"]}))

    assert sorted(a["name"] for a in plan["agents"]) == ["dma-1", "dma-2", "dma-s1"]
    assert sorted(a["name"] for a in both["agents"]) == ["dma-1", "dma-2", "dma-s1"]


def test_an_unknown_cluster_among_several_is_refused_in_one_line(api: ApiHarness) -> None:
    package = api.service.packages()[-1].sha256
    head = api.head()
    detail = refused(api, api.client(Role.OPERATOR).post(
        "/api/v1/rollouts", json={"package": package, "clusters": ["north", "west"]}), 404, "not_found", head)
    assert "unknown cluster 'west'" in detail
