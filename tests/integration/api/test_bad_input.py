"""Bad input over real HTTP: each answer is a clear 4xx with the JSON error body, and nothing is appended."""

from __future__ import annotations

import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from uuid import uuid4

import httpx

from dma_upgrade.adapters.access.tokens import Role
from dma_upgrade.adapters.api.guard import JSON_LIMIT
from tests.integration.api.harness import CLUSTER, ApiHarness
from tests.integration.rollout_harness import START_VERSION

ZEROS_MIB = 50


def refused(api: ApiHarness, response: httpx.Response, status: int, error: str, *mentions: str) -> str:
    """Assert ``response`` is ``status`` with the JSON error body naming ``error``; return its detail."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error", "detail"} and body["error"] == error, body
    assert "\n" not in body["detail"] and body["detail"]
    for mention in mentions:
        assert mention in body["detail"], body
    return str(body["detail"])


def unchanged(api: ApiHarness, requests: list[tuple[Callable[[], httpx.Response], int, str]]) -> None:
    """Each request is refused with its status and error kind, and the head stays where it was."""
    head = api.head()
    for send, status, error in requests:
        refused(api, send(), status, error)
    assert api.head() == head


# -- uploads --------------------------------------------------------------------------------------


def upload_bytes(api: ApiHarness, data: bytes, name: str = "DataMiner 10.5.0.0-15000.dmupgrade") -> httpx.Response:
    return api.client(Role.OPERATOR).post("/api/v1/packages", files={"file": (name, data, "application/octet-stream")})


def test_a_package_over_the_upload_limit_is_refused_with_413_and_not_stored(
        make_api: Callable[..., ApiHarness]) -> None:
    api = make_api(max_upload_bytes=512)
    package = api.build("10.5.0.0-15000")
    assert package.stat().st_size > 512
    head = api.head()

    detail = refused(api, api.upload(package), 413, "too_large", "512 bytes")

    assert "limit" in detail
    assert api.head() == head
    assert not any(api.settings.data_dir.joinpath("packages").glob("*"))


def test_an_upload_declaring_a_length_far_over_the_limit_is_refused_before_it_is_read(
        make_api: Callable[..., ApiHarness]) -> None:
    api = make_api(max_upload_bytes=512)
    head = api.head()

    refused(api, upload_bytes(api, bytes(200 * 1024)), 413, "too_large", "over the limit")

    assert api.head() == head


def test_a_streamed_upload_without_a_length_is_cut_off_at_the_limit(make_api: Callable[..., ApiHarness]) -> None:
    api = make_api(max_upload_bytes=512)
    head = api.head()

    def chunks() -> Iterator[bytes]:
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="x.dmupgrade"\r\n\r\n'
        for _ in range(16):
            yield bytes(64 * 1024)
        yield b"\r\n--b--\r\n"

    response = api.client(Role.OPERATOR).post("/api/v1/packages", content=chunks(),
                                              headers={"content-type": "multipart/form-data; boundary=b"})

    assert "content-length" not in response.request.headers
    refused(api, response, 413, "too_large", "limit")
    assert api.head() == head


def test_a_json_body_over_its_limit_is_refused_with_413(api: ApiHarness) -> None:
    too_long = {"name": "dma-9", "address": "x" * JSON_LIMIT, "version": START_VERSION}
    unchanged(api, [(lambda: api.client(Role.OPERATOR).post("/api/v1/agents", json=too_long), 413, "too_large")])


def test_a_file_that_is_not_a_zip_is_refused_with_422(api: ApiHarness) -> None:
    head = api.head()

    refused(api, upload_bytes(api, b"just some text, not a package\n"), 422, "invalid_input", "rejected")

    assert api.head() == head


def test_a_zip_bomb_is_refused_with_422_naming_it(api: ApiHarness, tmp_path: Path) -> None:
    bomb = tmp_path / "bomb" / "DataMiner 10.5.0.0-15000.dmupgrade"
    bomb.parent.mkdir()
    bomb.write_bytes(api.build("10.5.0.0-15000").read_bytes())
    with zipfile.ZipFile(bomb, "a", zipfile.ZIP_DEFLATED) as archive, archive.open("Files/zeros.bin", "w") as sink:
        for _ in range(ZEROS_MIB):
            sink.write(bytes(1024 * 1024))
    head = api.head()

    refused(api, api.upload(bomb), 422, "invalid_input", "zip bomb")

    assert api.head() == head
    assert [p["version"] for p in api.client(Role.VIEWER).get("/api/v1/packages").json()] == ["10.4.9.0"]


def test_an_empty_file_and_a_nameless_upload_are_refused_with_422(api: ApiHarness) -> None:
    unchanged(api, [
        (lambda: upload_bytes(api, b""), 422, "invalid_input"),
        (lambda: upload_bytes(api, b"PK\x03\x04", name=".."), 422, "invalid_input"),
    ])


def test_json_or_a_form_field_sent_to_the_upload_route_is_refused_with_422(api: ApiHarness) -> None:
    operator = api.client(Role.OPERATOR)
    unchanged(api, [
        (lambda: operator.post("/api/v1/packages", json={"file": "x.dmupgrade"}), 422, "invalid_input"),
        (lambda: operator.post("/api/v1/packages", data={"file": "x.dmupgrade"}), 422, "invalid_input"),
        (lambda: operator.post("/api/v1/packages", content=b"\x00\x01",
                               headers={"content-type": "application/octet-stream"}), 422, "invalid_input"),
    ])


def test_the_same_package_uploaded_twice_is_a_conflict(api: ApiHarness) -> None:
    unchanged(api, [(lambda: api.upload(api.build()), 409, "conflict")])


# -- JSON bodies ----------------------------------------------------------------------------------


def test_malformed_json_bodies_are_refused_with_422_naming_the_field(api: ApiHarness) -> None:
    operator = api.client(Role.OPERATOR)
    head = api.head()

    missing = refused(api, operator.post("/api/v1/agents", json={"name": "dma-9"}), 422, "invalid_input")
    extra = refused(api, operator.post("/api/v1/agents", json={"name": "dma-9", "address": "10.0.0.9",
                                                               "version": START_VERSION, "color": "red"}),
                    422, "invalid_input")
    not_json = refused(api, operator.post("/api/v1/agents", content=b"{not json",
                                          headers={"content-type": "application/json"}), 422, "invalid_input")

    assert "body.address" in missing and "body.version" in missing
    assert "body.color" in extra
    assert "JSON" in not_json
    assert api.head() == head


def test_values_the_engine_refuses_are_422(api: ApiHarness) -> None:
    operator, admin = api.client(Role.OPERATOR), api.client(Role.ADMIN)
    agent = {"name": "dma-9", "address": "10.0.0.9", "version": START_VERSION}
    facts = operator.get("/api/v1/agents/dma-1/facts").json()
    sha = operator.get("/api/v1/packages").json()[0]["sha256"]
    unchanged(api, [
        (lambda: operator.post("/api/v1/agents", json={**agent, "name": "bad name!"}), 422, "invalid_input"),
        (lambda: operator.post("/api/v1/agents", json={**agent, "version": "ten"}), 422, "invalid_input"),
        (lambda: operator.put("/api/v1/agents/dma-1/facts", json={**facts, "version": "10.5.0.0-15000"}),
         422, "invalid_input"),
        (lambda: operator.post("/api/v1/rollouts", json={"package": sha, "cluster": CLUSTER,
                                                         "max_concurrent": "lots"}), 422, "invalid_input"),
        (lambda: admin.put("/api/v1/settings/auto-start", json={"value": "maybe"}), 422, "invalid_input"),
        (lambda: admin.put("/api/v1/settings/no-such-setting", json={"value": "on"}), 422, "invalid_input"),
        (lambda: operator.post("/api/v1/agents/by-address", json={"address": "10.9.9.9"}), 502, "agent_failed"),
    ])


def test_a_broken_failover_pair_and_one_member_under_backup_first_are_422(api: ApiHarness) -> None:
    operator = api.client(Role.OPERATOR)
    for name, partner, role in (("dma-main", "dma-backup", "main"), ("dma-backup", "dma-main", "backup")):
        added = operator.post("/api/v1/agents", json={"name": name, "address": f"{name}.example", "cluster": CLUSTER,
                                                      "version": START_VERSION, "failover_partner": partner,
                                                      "failover_role": role})
        assert added.status_code == 201, added.text
    sha = operator.get("/api/v1/packages").json()[0]["sha256"]
    one_member = {"package": sha, "agents": ["dma-main"], "failover_policy": "backup-first"}
    head = api.head()

    for path in ("/api/v1/rollouts/plan", "/api/v1/rollouts"):
        refused(api, operator.post(path, json=one_member), 422, "invalid_input",
                "agent dma-main: its failover partner dma-backup is not in this rollout", "--allow-partial-pair")
    refused(api, operator.post("/api/v1/agents", json={"name": "dma-spare", "address": "10.0.0.77", "cluster": CLUSTER,
                                                       "version": START_VERSION, "failover_partner": "dma-main",
                                                       "failover_role": "backup"}),
            422, "invalid_input", "dma-main is registered already and is paired with dma-backup",
            "register the first member naming the second")
    assert api.head() == head

    plan = operator.post("/api/v1/rollouts/plan", json={**one_member, "allow_partial_pair": True})
    assert plan.status_code == 200, plan.text
    body = plan.json()
    assert body["allow_partial_pair"] is True and "switch_over" not in body["agents"][0]["steps"]
    assert any(w.startswith("agent dma-main: upgraded without its failover partner dma-backup (--allow-partial-pair)")
               for w in body["warnings"])
    pair = operator.post("/api/v1/rollouts/plan", json={"package": sha, "agents": ["dma-main", "dma-backup"],
                                                        "failover_policy": "simultaneous"}).json()
    note = "pair dma-main/dma-backup: the pair is down together during its upgrade (failover policy simultaneous)"
    assert pair["notes"] == [note] and [a["notes"] for a in pair["agents"]] == [[note], [note]]
    assert api.head() == head


# -- unknown ids, conflicts, illegal transitions ---------------------------------------------------


def test_unknown_ids_are_404(api: ApiHarness) -> None:
    viewer, operator = api.client(Role.VIEWER), api.client(Role.OPERATOR)
    rollout = uuid4()
    sha = viewer.get("/api/v1/packages").json()[0]["sha256"]
    facts = viewer.get("/api/v1/agents/dma-1/facts").json()
    unchanged(api, [
        (lambda: viewer.get("/api/v1/agents/nobody"), 404, "not_found"),
        (lambda: viewer.get("/api/v1/agents/nobody/facts"), 404, "not_found"),
        (lambda: viewer.get("/api/v1/agents/nobody/history"), 404, "not_found"),
        (lambda: operator.put("/api/v1/agents/nobody/facts", json=facts), 404, "not_found"),
        (lambda: operator.post("/api/v1/agents/nobody/start"), 404, "not_found"),
        (lambda: viewer.get("/api/v1/packages/0123456789abcdef"), 404, "not_found"),
        (lambda: viewer.get(f"/api/v1/rollouts/{rollout}"), 404, "not_found"),
        (lambda: operator.post(f"/api/v1/rollouts/{rollout}/pause"), 404, "not_found"),
        (lambda: viewer.get(f"/api/v1/progress/{rollout}"), 404, "not_found"),
        (lambda: viewer.get(f"/api/v1/progress/{rollout}/agents/dma-1"), 404, "not_found"),
        (lambda: operator.post("/api/v1/rollouts", json={"package": "0123456789abcdef", "cluster": CLUSTER}),
         404, "not_found"),
        (lambda: operator.post("/api/v1/rollouts", json={"package": sha, "agents": ["nobody"]}),
         404, "not_found"),
        (lambda: viewer.get("/api/v1/no-such-route"), 404, "not_found"),
    ])


def test_commands_the_rollout_does_not_allow_now_are_409_illegal_transition(api: ApiHarness) -> None:
    operator = api.client(Role.OPERATOR)
    rollout_id = api.start_rollout()["rollout_id"]
    unchanged(api, [
        (lambda: operator.post(f"/api/v1/rollouts/{rollout_id}/pause"), 409, "illegal_transition"),
        (lambda: operator.post(f"/api/v1/rollouts/{rollout_id}/resume"), 409, "illegal_transition"),
        (lambda: operator.post(f"/api/v1/rollouts/{rollout_id}/retry-failed"), 409, "illegal_transition"),
    ])
    api.run(rollout_id)
    unchanged(api, [(lambda: operator.post(f"/api/v1/rollouts/{rollout_id}/cancel"), 409, "illegal_transition")])


def test_a_registered_agent_a_busy_cluster_and_a_running_agent_are_409_conflicts(api: ApiHarness) -> None:
    operator = api.client(Role.OPERATOR)
    api.start_rollout(start_at="2099-01-01T00:00:00Z")
    other = api.upload_package("10.5.0.0-15000")["sha256"]
    unchanged(api, [
        (lambda: operator.post("/api/v1/agents", json={"name": "dma-1", "address": "10.0.0.99",
                                                       "version": START_VERSION}), 409, "conflict"),
        (lambda: operator.post("/api/v1/agents", json={"name": "dma-99", "address": "10.0.0.1",
                                                       "version": START_VERSION}), 409, "conflict"),
        (lambda: operator.post("/api/v1/rollouts", json={"package": other, "cluster": CLUSTER}), 409, "conflict"),
        (lambda: operator.post("/api/v1/agents/dma-1/start"), 409, "conflict"),
    ])


# -- malformed query parameters -------------------------------------------------------------------


MALFORMED_QUERIES: list[tuple[str, dict[str, str]]] = [
    ("/api/v1/progress/{rollout}", {"as_of": "yesterday"}),
    ("/api/v1/progress/{rollout}", {"as_of": "2026-13-45T25:61:00"}),
    ("/api/v1/progress/{rollout}", {"as_of": "2999-01-01T00:00:00Z"}),
    ("/api/v1/progress/{rollout}", {"as_of": "2000-01-01T00:00:00Z"}),
    ("/api/v1/progress/{rollout}", {"at_position": "0"}),
    ("/api/v1/progress/{rollout}", {"at_position": "999999"}),
    ("/api/v1/progress/{rollout}", {"at_position": "first"}),
    ("/api/v1/progress/{rollout}", {"at_position": "1", "as_of": "2026-11-30T09:00:00Z"}),
    ("/api/v1/progress/not-a-uuid", {}),
    ("/api/v1/audit/verify", {"anchor": "garbage"}),
    ("/api/v1/audit/verify", {"anchor": "abc@1"}),
    ("/api/v1/audit/verify", {"anchor": "a" * 300}),
    ("/api/v1/audit/export", {"from": "last tuesday"}),
    ("/api/v1/audit/export", {"from": "2026-12-01", "to": "2026-11-01"}),
    ("/api/v1/audit/export", {"rollout": "not-a-uuid"}),
    ("/api/v1/audit/export", {"format": "xml"}),
]


def test_malformed_times_positions_anchors_and_ids_are_422(api: ApiHarness) -> None:
    rollout_id = api.start_rollout()["rollout_id"]
    viewer = api.client(Role.VIEWER)
    head = api.head()
    for path, params in MALFORMED_QUERIES:
        response = viewer.get(path.format(rollout=rollout_id), params=params)
        assert response.status_code == 422, (path, params, response.text)
        refused(api, response, 422, "invalid_input")
    assert api.head() == head


def test_an_anchor_the_log_does_not_hold_fails_verification_without_an_error(api: ApiHarness) -> None:
    anchor = f"{'0' * 64}@1"

    verdict = api.client(Role.VIEWER).get("/api/v1/audit/verify", params={"anchor": anchor})

    assert verdict.status_code == 200
    assert verdict.json()["ok"] is False and verdict.json()["problem"]
