"""The API's upgrade-path advisor (``GET /api/v1/upgrade-path``), SNMP ports (``PUT /api/v1/agents/{name}/ports``),
the path check of a planned rollout (``skip_path_check``) and version texts (422 naming the forms expected)."""

from __future__ import annotations

from typing import Any

from dma_upgrade.adapters.access.tokens import Role
from tests.integration.api.harness import ApiHarness
from tests.integration.rollout_harness import PACKAGE_VERSION

CONFLICT = "Stop SNMP is off and SLSNMPAgent and Windows SNMP both use UDP port"


def ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def refused(api: ApiHarness, response: Any, status: int, fragment: str, head: int) -> None:
    """A one-line refusal with ``status`` that appended nothing."""
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert fragment in detail and "\n" not in detail
    assert api.head() == head


def add(api: ApiHarness, name: str, address: str, version: str, cluster: str) -> None:
    body = {"name": name, "address": address, "version": version, "cluster": cluster, "facts": {"version": version}}
    ok(api.client(Role.OPERATOR).post("/api/v1/agents", json=body), 201)


def test_the_path_from_a_version_lists_each_hop_with_the_packages_covering_it(api: ApiHarness) -> None:
    ten_three = api.upload_package("10.3.0.0(CU4)-13500")
    paths = ok(api.client(Role.VIEWER).get("/api/v1/upgrade-path",
                                           params={"from": "10.2.0 CU5", "to": PACKAGE_VERSION}))
    [path] = paths
    assert (path["current"], path["target"], path["direct"], path["refused"], path["agents"]) == (
        "10.2.0.0(CU5)", PACKAGE_VERSION, False, None, [])
    assert [hop["versions"] for hop in path["hops"]] == ["10.3.0 with its latest CU", PACKAGE_VERSION]
    first, last = path["hops"]
    assert (first["lowest"], first["below"]) == ("10.3.0.0", "10.3.1.0")
    assert first["rules"] == ["across major versions, go through the latest CU of each major version in between"]
    assert [p["sha256"] for p in first["packages"]] == [ten_three["sha256"]]
    assert [p["version"] for p in last["packages"]] == [PACKAGE_VERSION]
    assert last["rules"] == []


def test_the_path_of_a_cluster_is_one_per_distinct_version_and_of_an_agent_its_own(api: ApiHarness) -> None:
    add(api, "west-1", "10.0.5.1", "10.2.0.0(CU5)-12000", "west")
    add(api, "west-2", "10.0.5.2", "10.2.0.0(CU5)-12000", "west")
    add(api, "west-3", "10.0.5.3", "10.4.0.0-14112", "west")
    viewer = api.client(Role.VIEWER)
    paths = ok(viewer.get("/api/v1/upgrade-path", params={"cluster": "west", "to": PACKAGE_VERSION}))
    assert [(p["agents"], p["direct"]) for p in paths] == [(["west-1", "west-2"], False), (["west-3"], True)]
    [path] = ok(viewer.get("/api/v1/upgrade-path", params={"agent": "west-3", "to": PACKAGE_VERSION}))
    assert path["agents"] == ["west-3"] and path["direct"]


def test_a_jump_with_no_path_says_why(api: ApiHarness) -> None:
    [path] = ok(api.client(Role.VIEWER).get("/api/v1/upgrade-path", params={"from": "10.0.0 CU19", "to": "10.1.0"}))
    assert path["hops"] == [] and "from before 10.1, skip 10.1" in path["refused"]


def test_bad_path_queries_are_refused(api: ApiHarness) -> None:
    viewer, head = api.client(Role.VIEWER), api.head()
    refused(api, viewer.get("/api/v1/upgrade-path", params={"from": "garbage", "to": "10.4.0"}), 422,
            "expected A.B.C[.D], an optional CU and an optional -build", head)
    refused(api, viewer.get("/api/v1/upgrade-path", params={"to": "10.4.0"}), 422,
            "give exactly one of --from VERSION, --agent NAME or --cluster NAME", head)
    refused(api, viewer.get("/api/v1/upgrade-path", params={"to": "10.4.0", "agent": "dma-1", "from": "10.4.0"}),
            422, "give exactly one", head)
    refused(api, viewer.get("/api/v1/upgrade-path", params={"agent": "nobody", "to": "10.4.0"}), 404,
            "unknown agent 'nobody'", head)
    refused(api, viewer.get("/api/v1/upgrade-path", params={"cluster": "nowhere", "to": "10.4.0"}), 404,
            "no agent is registered in cluster 'nowhere'", head)


def test_a_rollout_that_breaks_the_path_is_refused_unless_skip_path_check(api: ApiHarness) -> None:
    add(api, "west-1", "10.0.5.1", "10.2.0.0(CU5)-12000", "west")
    operator, head = api.client(Role.OPERATOR), api.head()
    body = {"package": api.service.packages()[-1].sha256, "cluster": "west"}
    refused(api, operator.post("/api/v1/rollouts", json=body), 422,
            "agent west-1: 10.2.0.0(CU5)-12000 cannot go to 10.4.9.0-14794 directly: install 10.3.0 with its "
            "latest CU → 10.4.9.0-14794", head)
    planned = ok(operator.post("/api/v1/rollouts", json={**body, "skip_path_check": True}), 201)
    assert planned["skip_path_check"] is True
    assert any("(--skip-path-check)" in warning for warning in planned["warnings"])


def test_setting_ports_clears_the_conflict_warning(api: ApiHarness) -> None:
    add(api, "west-1", "10.0.5.1", "10.4.0.0-14112", "west")
    operator = api.client(Role.OPERATOR)
    body = {"package": api.service.packages()[-1].sha256, "agents": ["west-1"], "stop_snmp": False}
    before = ok(operator.post("/api/v1/rollouts/plan", json=body))
    assert any(CONFLICT in warning for warning in before["warnings"])
    agent = ok(operator.put("/api/v1/agents/west-1/ports", json={"snmp_agent_port": 1161}))
    assert (agent["facts"]["snmp_agent_port"], agent["facts"]["windows_snmp_port"]) == (1161, 161)
    after = ok(operator.post("/api/v1/rollouts/plan", json=body))
    assert not any(CONFLICT in warning for warning in after["warnings"])


def test_bad_ports_are_refused(api: ApiHarness) -> None:
    add(api, "west-1", "10.0.5.1", "10.4.0.0-14112", "west")
    operator, head = api.client(Role.OPERATOR), api.head()
    assert operator.put("/api/v1/agents/west-1/ports", json={"snmp_agent_port": 0}).status_code == 422
    assert operator.put("/api/v1/agents/west-1/ports", json={"snmp": 1}).status_code == 422
    refused(api, operator.put("/api/v1/agents/west-1/ports", json={}), 422, "give --snmp-port", head)
    refused(api, operator.put("/api/v1/agents/nobody/ports", json={"snmp_agent_port": 1}), 404, "unknown agent", head)
    assert api.client(Role.VIEWER).put("/api/v1/agents/west-1/ports",
                                       json={"snmp_agent_port": 1161}).status_code == 403
    assert api.head() == head


def test_a_garbage_version_is_422_naming_the_forms(api: ApiHarness) -> None:
    head = api.head()
    response = api.client(Role.OPERATOR).post("/api/v1/agents", json={"name": "x", "address": "10.0.9.1",
                                                                       "version": "garbage"})
    refused(api, response, 422, "invalid DataMiner version 'garbage': expected A.B.C[.D]", head)
