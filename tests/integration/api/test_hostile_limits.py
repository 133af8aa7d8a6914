"""Over real HTTP, an anchor beyond any position and a limit that would start no agent are 422, never 500."""

from __future__ import annotations

import pytest

from dma_upgrade.adapters.access.tokens import Role
from tests.integration.api.harness import CLUSTER, ApiHarness
from tests.integration.api.test_bad_input import refused


@pytest.mark.parametrize("position", ["99999999999999999999", str(2**63), "0"])
def test_an_anchor_position_no_log_can_hold_is_422(api: ApiHarness, position: str) -> None:
    response = api.client(Role.VIEWER).get("/api/v1/audit/verify", params={"anchor": f"{'a' * 64}@{position}"})
    refused(api, response, 422, "invalid_input", "HASH@POSITION")


@pytest.mark.parametrize("route", ["/api/v1/rollouts/plan", "/api/v1/rollouts"])
@pytest.mark.parametrize("max_concurrent", ["0", "0%"])
def test_a_max_concurrent_that_would_start_no_agent_is_422_and_appends_nothing(api: ApiHarness, route: str,
                                                                               max_concurrent: str) -> None:
    sha = api.service.packages()[-1].sha256
    head = api.head()
    response = api.client(Role.OPERATOR).post(route, json={"package": sha, "cluster": CLUSTER,
                                                           "max_concurrent": max_concurrent})
    refused(api, response, 422, "invalid_input", "--max-concurrent must be at least 1")
    assert api.head() == head
