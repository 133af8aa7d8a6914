"""The API's happy paths over real HTTP: agents, packages, rollouts, progress, settings and the audit trail,
each change recorded with the calling token's name as its actor."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest

from dma_upgrade.adapters.access.tokens import Role
from dma_upgrade.adapters.agents.simulated_gateway import SimulatedAgent
from dma_upgrade.adapters.cli.context import Server
from dma_upgrade.adapters.cli.errors import exit_code_for
from dma_upgrade.adapters.cli.remote import HttpBackend
from dma_upgrade.adapters.errors import ServerRefusal
from dma_upgrade.adapters.sql.leases import ROLLOUT, UPGRADE, SqlLeases
from dma_upgrade.engine.upgrade_events import Step
from tests.integration.api.harness import ACTORS, CLUSTER, UNREGISTERED, ApiHarness
from tests.integration.rollout_harness import PACKAGE_VERSION, START_VERSION
from tests.upgrade_states import put_in_doubt

OPERATOR = ACTORS[Role.OPERATOR]
NEW_VERSION = "10.4.9.0-14794"


def ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def export_lines(api: ApiHarness, **params: str) -> list[str]:
    """The streamed audit export, line by line."""
    with api.client(Role.VIEWER).stream("GET", "/api/v1/audit/export", params=params) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["transfer-encoding"] == "chunked"
        return list(response.iter_lines())


# -- agents ---------------------------------------------------------------------------------------


def test_an_added_agent_is_listed_and_read_back_with_default_healthy_facts(api: ApiHarness) -> None:
    added = ok(api.client(Role.OPERATOR).post("/api/v1/agents", json={
        "name": "dma-9", "address": "10.0.0.9", "version": START_VERSION, "cluster": "south"}), 201)

    assert added["name"] == "dma-9" and added["cluster"] == "south" and added["version"] == START_VERSION
    viewer = api.client(Role.VIEWER)
    assert [a["name"] for a in ok(viewer.get("/api/v1/agents"))] == ["dma-1", "dma-2", "dma-9"]
    assert ok(viewer.get("/api/v1/agents/dma-9")) == added
    facts = ok(viewer.get("/api/v1/agents/dma-9/facts"))
    assert facts["version"] == START_VERSION and facts["nats_running"] is True


def test_an_agent_added_by_address_is_named_by_what_it_answers_and_added_once(api: ApiHarness) -> None:
    operator = api.client(Role.OPERATOR)
    added = ok(operator.post("/api/v1/agents/by-address", json={"address": f" {UNREGISTERED.address} "}), 201)
    head = api.head()

    again = ok(operator.post("/api/v1/agents/by-address", json={"address": UNREGISTERED.address}), 201)

    assert added["name"] == UNREGISTERED.name and added["cluster"] == CLUSTER
    assert added["facts"]["version"] == UNREGISTERED.version
    assert again == added
    assert api.head() == head


def test_facts_put_replace_what_an_agent_reports(api: ApiHarness) -> None:
    operator = api.client(Role.OPERATOR)
    facts = ok(operator.get("/api/v1/agents/dma-1/facts"))
    reported = {**facts, "components": ["dotnet-8"], "nats_running": False}

    updated = ok(operator.put("/api/v1/agents/dma-1/facts", json=reported))

    assert updated["facts"] == reported
    assert ok(operator.get("/api/v1/agents/dma-1/facts")) == reported


def test_an_agent_left_stopped_by_an_upgrade_is_started_through_the_api(api: ApiHarness) -> None:
    started = api.start_rollout(agents=["dma-1"], cluster=None, auto_start=False)
    api.run(started["rollout_id"])
    operator = api.client(Role.OPERATOR)
    assert ok(operator.get("/api/v1/agents/dma-1"))["needs_manual_start"] is True

    agent = ok(operator.post("/api/v1/agents/dma-1/start"))

    assert agent["needs_manual_start"] is False
    assert agent["version"] == NEW_VERSION
    assert api.gateway.journal()[-1] == ("dma-1", Step.START)


def test_an_agents_version_history_lists_every_version_it_ran(api: ApiHarness) -> None:
    api.run(api.start_rollout()["rollout_id"])

    history = ok(api.client(Role.VIEWER).get("/api/v1/agents/dma-1/history"))

    assert [h["version"] for h in history] == [START_VERSION, NEW_VERSION]


# -- packages -------------------------------------------------------------------------------------


def test_an_uploaded_package_is_listed_found_by_prefix_and_in_the_history(api: ApiHarness) -> None:
    uploaded = ok(api.upload(api.build("10.5.0.0-15000")), 201)
    viewer = api.client(Role.VIEWER)

    assert uploaded["version"] == "10.5.0.0" and uploaded["uploaded_by"] == OPERATOR
    assert uploaded["status"] == "available" and uploaded["file_name"].endswith(".dmupgrade")
    assert [p["version"] for p in ok(viewer.get("/api/v1/packages"))] == ["10.4.9.0", "10.5.0.0"]
    assert ok(viewer.get(f"/api/v1/packages/{uploaded['sha256'][:10]}")) == uploaded
    history = ok(viewer.get("/api/v1/packages/history"))
    assert [(h["sha256"], h["uploaded_by"]) for h in history][-1] == (uploaded["sha256"], OPERATOR)
    assert [h["version"] for h in history] == [PACKAGE_VERSION, "10.5.0.0-15000"]
    assert api.settings.data_dir.joinpath("packages").is_dir()


def test_the_package_history_names_the_rollout_that_used_a_package(api: ApiHarness) -> None:
    started = api.start_rollout()
    api.run(started["rollout_id"])

    history = ok(api.client(Role.VIEWER).get("/api/v1/packages/history"))

    assert [r["rollout_id"] for r in history[0]["rollouts"]] == [started["rollout_id"]]
    assert history[0]["status"] == "completed"


# -- rollouts -------------------------------------------------------------------------------------


def test_a_plan_is_a_dry_run_that_records_nothing(api: ApiHarness) -> None:
    head = api.head()
    sha = ok(api.client(Role.VIEWER).get("/api/v1/packages"))[0]["sha256"]

    plan = ok(api.client(Role.VIEWER).post("/api/v1/rollouts/plan", json={"package": sha[:12], "cluster": CLUSTER,
                                                                        "max_concurrent": "1"}))

    assert plan["started"] is False and plan["max_concurrent"] == 1
    assert [a["name"] for a in plan["agents"]] == ["dma-1", "dma-2"]
    assert api.head() == head


def test_a_started_rollout_runs_to_completion_and_reads_back(api: ApiHarness) -> None:
    started = api.start_rollout(start_at="2020-01-01T00:00:00")
    assert started["started"] is True and started["package_version"] == PACKAGE_VERSION
    assert "in the past" in started["notes"][0]

    api.run(started["rollout_id"])

    state = ok(api.client(Role.VIEWER).get(f"/api/v1/rollouts/{started['rollout_id']}"))
    assert state == {"rollout_id": started["rollout_id"], "state": "Completed", "end_reason": None}


def test_a_running_rollout_is_paused_and_resumed_through_the_api(api: ApiHarness) -> None:
    rollout_id = api.start_rollout(max_concurrent="1")["rollout_id"]
    operator = api.client(Role.OPERATOR)
    answers: list[str] = []

    def control_while_running(_: float) -> None:
        state = ok(operator.get(f"/api/v1/rollouts/{rollout_id}"))["state"]
        command = {"Running": "pause", "Paused": "resume"}.get(state)
        if command is not None and len(answers) < 2:
            answers.append(ok(operator.post(f"/api/v1/rollouts/{rollout_id}/{command}"))["state"])

    assert api.run(rollout_id, on_wait=control_while_running).state == "Completed"
    assert answers == ["Paused", "Running"]


def test_a_cancelled_rollout_names_the_caller_and_frees_its_cluster(api: ApiHarness) -> None:
    rollout_id = api.start_rollout(start_at="2099-01-01T00:00:00Z")["rollout_id"]

    cancelled = ok(api.client(Role.OPERATOR).post(f"/api/v1/rollouts/{rollout_id}/cancel"))

    assert cancelled["state"] == "Cancelled" and cancelled["end_reason"] == f"cancelled by {OPERATOR}"
    assert ok(api.client(Role.VIEWER).get(f"/api/v1/progress/{rollout_id}"))["state"] == "Cancelled"
    api.upload_package("10.5.0.0-15000")
    assert api.start_rollout()["rollout_id"] != rollout_id


def test_an_operator_resolves_a_step_in_doubt_a_viewer_may_not_and_nothing_in_doubt_is_409(api: ApiHarness) -> None:
    rollout_id = api.start_rollout()["rollout_id"]
    planned = api.service.rollout(UUID(rollout_id)).plan
    put_in_doubt(api.service, planned, "dma-1", Step.INSTALL, "no answer within 1800 s")
    put_in_doubt(api.service, planned, "dma-2", Step.UPLOAD, "the connection was cut")
    viewer, operator = api.client(Role.VIEWER), api.client(Role.OPERATOR)
    resolve = f"/api/v1/rollouts/{rollout_id}/resolve"
    agents = {a["agent"]: a for a in ok(viewer.get(f"/api/v1/progress/{rollout_id}"))["agents"]}
    assert (agents["dma-1"]["in_doubt"], agents["dma-1"]["last_error"]) == (True, "no answer within 1800 s")
    head = api.head()

    refused = viewer.post(resolve, json={"agent": "dma-1", "applied": True})
    assert refused.status_code == 403 and refused.json()["error"] == "forbidden"
    unknown = operator.post(resolve, json={"agent": "dma-9", "applied": True})
    assert unknown.status_code == 404 and unknown.json()["error"] == "not_found"
    assert operator.post(f"/api/v1/rollouts/{uuid4()}/resolve", json={"agent": "dma-1", "applied": True}
                         ).status_code == 404
    assert operator.post(resolve, json={"agent": "dma-1"}).status_code == 422
    assert api.head() == head

    resolved = ok(operator.post(resolve, json={"agent": "dma-1", "applied": True}))

    assert resolved == {"rollout_id": rollout_id, "agent": "dma-1", "step": "install", "attempt": 1, "applied": True,
                        "version_after": NEW_VERSION, "state": "Installing"}
    appended = list(api.records(head))
    assert [(r.event_type, r.metadata.actor) for r in appended] == [("AgentVersionChanged", OPERATOR),
                                                                    ("StepDoubtResolved", OPERATOR)]
    assert ok(viewer.get("/api/v1/agents/dma-1"))["version"] == NEW_VERSION
    agents = {a["agent"]: a for a in ok(viewer.get(f"/api/v1/progress/{rollout_id}"))["agents"]}
    assert (agents["dma-1"]["in_doubt"], agents["dma-1"]["steps_done"]) == (False, 3)
    assert agents["dma-2"]["in_doubt"] is True

    head = api.head()
    again = operator.post(resolve, json={"agent": "dma-1", "applied": False})
    assert again.status_code == 409 and again.json()["error"] == "illegal_transition"
    assert "no step is in doubt" in again.json()["detail"]
    assert api.head() == head

    with HttpBackend(Server(api.server.url, api.tokens[Role.OPERATOR], "--server")) as remote:
        by_cli = remote.resolve(UUID(rollout_id), "dma-2", False)
        with pytest.raises(ServerRefusal) as twice:
            remote.resolve(UUID(rollout_id), "dma-2", False)
    assert (by_cli.agent, by_cli.step, by_cli.applied, by_cli.version_after, by_cli.state) == (
        "dma-2", "upload", False, None, "Scheduled")
    assert exit_code_for(twice.value) == 5
    assert ok(viewer.get("/api/v1/agents/dma-2"))["version"] == START_VERSION


def test_retry_failed_reruns_the_failed_agents_to_completion(api: ApiHarness) -> None:
    api.gateway.fail("dma-1", Step.INSTALL, times=None)
    rollout_id = api.start_rollout()["rollout_id"]
    assert api.run(rollout_id).state == "Failed"
    api.gateway.heal("dma-1")

    retried = ok(api.client(Role.OPERATOR).post(f"/api/v1/rollouts/{rollout_id}/retry-failed"))

    assert retried["state"] == "Running"
    assert api.run(rollout_id).state == "Completed"


# -- progress -------------------------------------------------------------------------------------


def test_progress_now_per_rollout_and_per_agent(api: ApiHarness) -> None:
    rollout_id = api.start_rollout()["rollout_id"]
    api.run(rollout_id)
    viewer = api.client(Role.VIEWER)

    everything = ok(viewer.get("/api/v1/progress"))
    one = ok(viewer.get(f"/api/v1/progress/{rollout_id}"))
    agent = ok(viewer.get(f"/api/v1/progress/{rollout_id}/agents/dma-2"))

    assert everything == [one]
    assert one["state"] == "Completed" and one["completed"] == 2 and one["planned_by"] == OPERATOR
    assert [a["agent"] for a in one["agents"]] == ["dma-1", "dma-2"]
    assert agent == one["agents"][1]
    assert agent["state"] == "Completed" and agent["version_after"] == NEW_VERSION


def test_progress_read_while_a_rollout_runs_follows_every_change(api: ApiHarness) -> None:
    first = api.start_rollout(agents=["dma-1"], cluster=None)["rollout_id"]
    api.add_agents(SimulatedAgent(name="dma-south", address="10.1.0.1", cluster="south", version=START_VERSION))
    api.upload_package("10.5.0.0-15000")
    second = api.start_rollout(cluster="south")["rollout_id"]
    viewer = api.client(Role.VIEWER)
    seen: list[tuple[str, str, str]] = []

    def read(_: float) -> None:
        listed = ok(viewer.get("/api/v1/progress"))
        assert [r["rollout_id"] for r in listed] == [first, second]
        seen.append((listed[0]["state"], listed[0]["agents"][0]["state"], listed[1]["state"]))

    read(0)
    api.run(first, on_wait=read)
    read(0)

    assert seen[0] == ("Planned", "Scheduled", "Planned") and seen[-1] == ("Completed", "Completed", "Planned")
    assert [agent for _, agent, _ in seen].index("Installing") > 0  # seen mid-way, as the engine waited
    assert ok(viewer.get(f"/api/v1/progress/{first}")) == ok(viewer.get("/api/v1/progress"))[0]


def test_progress_of_a_scheduled_rollout_carries_its_start_time_then_when_it_started_and_how_late(
        api: ApiHarness) -> None:
    start_at = api.clock.now() + timedelta(minutes=1)
    rollout_id = api.start_rollout(start_at=start_at.isoformat())["rollout_id"]
    viewer = api.client(Role.VIEWER)

    waiting = ok(viewer.get(f"/api/v1/progress/{rollout_id}"))
    api.clock.advance(60 + 12)  # no engine ran at the time: one takes the start up 12 s after it
    api.run(rollout_id)
    started = ok(viewer.get(f"/api/v1/progress/{rollout_id}"))
    api.upload_package("10.5.0.0-15000")
    unscheduled = api.start_rollout()
    api.run(unscheduled["rollout_id"])
    now = ok(viewer.get(f"/api/v1/progress/{unscheduled['rollout_id']}"))

    assert (waiting["state"], waiting["start_at"], waiting["started_at"], waiting["start_lateness_seconds"]) == (
        "Planned", "2026-11-30T09:01:00Z", None, None)
    assert (started["state"], started["start_at"], started["started_at"], started["start_lateness_seconds"]) == (
        "Completed", "2026-11-30T09:01:00Z", "2026-11-30T09:01:12Z", 12.0)
    assert (now["start_at"], now["start_lateness_seconds"]) == (None, None) and now["started_at"] is not None


def test_progress_as_of_a_time_and_at_a_position_show_the_rollout_as_it_was(api: ApiHarness) -> None:
    rollout_id = api.start_rollout()["rollout_id"]
    planned_position = api.head()
    api.clock.advance(60)
    planned_at = api.clock.now().isoformat()
    api.clock.advance(60)
    api.run(rollout_id)
    viewer = api.client(Role.VIEWER)

    at_time = ok(viewer.get(f"/api/v1/progress/{rollout_id}", params={"as_of": planned_at}))
    at_position = ok(viewer.get(f"/api/v1/progress/{rollout_id}", params={"at_position": planned_position}))

    assert at_time == at_position
    assert at_time["state"] == "Planned" and at_time["completed"] == 0
    assert {a["state"] for a in at_time["agents"]} == {"Scheduled"}
    assert ok(viewer.get(f"/api/v1/progress/{rollout_id}"))["state"] == "Completed"


# -- settings, projections and the audit trail ---------------------------------------------------


def test_the_admin_changes_a_setting_and_every_caller_reads_it(api: ApiHarness) -> None:
    changed = ok(api.client(Role.ADMIN).put("/api/v1/settings/auto-start", json={"value": " OFF "}))

    assert changed["auto-start"] == "off"
    assert ok(api.client(Role.VIEWER).get("/api/v1/settings")) == changed


def test_projections_report_their_checkpoints(api: ApiHarness) -> None:
    ok(api.client(Role.VIEWER).get("/api/v1/progress"))

    statuses = {p["name"]: p for p in ok(api.client(Role.VIEWER).get("/api/v1/projections"))}

    assert statuses["progress"]["position"] == statuses["progress"]["head"] == api.head()
    assert statuses["progress"]["lag_events"] == 0


def test_audit_verify_holds_and_accepts_the_anchor_of_an_export(api: ApiHarness) -> None:
    anchor = json.loads(export_lines(api)[-1])["anchor"]
    viewer = api.client(Role.VIEWER)

    verdict = ok(viewer.get("/api/v1/audit/verify", params={"anchor": anchor}))

    assert verdict == {"ok": True, "verified": api.head(), "head": anchor, "broken_at": None, "problem": None}


def test_the_jsonl_export_streams_every_event_then_the_anchor_line(api: ApiHarness) -> None:
    lines = export_lines(api)

    events, trailer = [json.loads(line) for line in lines[:-1]], json.loads(lines[-1])
    assert [e["position"] for e in events] == list(range(1, api.head() + 1))
    assert trailer == {"anchor": f"{events[-1]['hash']}@{api.head()}", "exported": api.head()}


def test_the_csv_export_of_one_rollout_ends_with_the_anchor_comment(api: ApiHarness) -> None:
    rollout_id = api.start_rollout()["rollout_id"]
    api.run(rollout_id)

    lines = export_lines(api, format="csv", rollout=rollout_id)

    rows = list(csv.DictReader(io.StringIO("\n".join(lines[:-1]))))
    assert rows and all(r["correlation_id"] == rollout_id for r in rows)
    assert lines[-1] == f"# anchor {rows[-1]['hash']}@{rows[-1]['position']} exported {len(rows)}"


def test_every_event_appended_through_the_api_records_the_callers_token_name(api: ApiHarness) -> None:
    rollout_id = api.start_rollout(start_at="2099-01-01T00:00:00Z")["rollout_id"]
    ok(api.client(Role.ADMIN).put("/api/v1/settings/reboot", json={"value": "on"}))
    ok(api.client(Role.OPERATOR).post(f"/api/v1/rollouts/{rollout_id}/cancel"))
    ok(api.client(Role.ADMIN).post("/api/v1/agents/by-address", json={"address": UNREGISTERED.address}), 201)

    actors = {r.position: (r.event_type, r.metadata.actor) for r in api.records()}
    exported = {e["position"]: (e["event_type"], e["actor"]) for e in map(json.loads, export_lines(api)[:-1])}

    assert exported == actors
    assert {actor for _, actor in actors.values()} == {ACTORS[Role.OPERATOR], ACTORS[Role.ADMIN]}
    by_type = {event_type: actor for event_type, actor in actors.values()}
    assert by_type["SettingChanged"] == ACTORS[Role.ADMIN]
    assert by_type["RolloutCancelled"] == ACTORS[Role.OPERATOR]
    assert by_type["PackageUploaded"] == ACTORS[Role.OPERATOR]
    assert actors[api.head()] == ("AgentFactsReported", ACTORS[Role.ADMIN])


def test_engines_lists_each_engine_process_with_what_it_drives_and_the_upgrades_waiting(api: ApiHarness) -> None:
    assert ok(api.client(Role.VIEWER).get("/api/v1/engines")) == {"engines": [], "upgrades_waiting": 0}
    rollout, upgrades = uuid4(), [uuid4() for _ in range(3)]
    first = SqlLeases(api.container.engine, api.clock, owner="host-a/101/aaaa", seconds=30)
    second = SqlLeases(api.container.engine, api.clock, owner="host-b/202/bbbb", seconds=30)
    first.claim(ROLLOUT, [rollout])
    first.offer(rollout, upgrades)
    first.claim(UPGRADE, limit=1)
    second.claim(UPGRADE, limit=1)
    second.plays("projections")

    body = ok(api.client(Role.VIEWER).get("/api/v1/engines"))

    expires = (api.clock.now() + timedelta(seconds=30)).isoformat().replace("+00:00", "Z")
    assert body == {"upgrades_waiting": 1, "engines": [
        {"engine_instance": "host-a/101/aaaa", "host": "host-a", "pid": "101", "rollouts": [str(rollout)],
         "upgrades": 1, "roles": [], "lease_expires_at": expires},
        {"engine_instance": "host-b/202/bbbb", "host": "host-b", "pid": "202", "rollouts": [], "upgrades": 1,
         "roles": ["projections"], "lease_expires_at": expires}]}
    api.clock.advance(31)  # both stopped renewing: their leases count as free
    assert ok(api.client(Role.VIEWER).get("/api/v1/engines")) == {"engines": [], "upgrades_waiting": 3}
