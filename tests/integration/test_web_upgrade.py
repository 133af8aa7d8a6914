"""Web packages (issue 15, item 4) update the web components only: each agent uploads and installs, nothing else
(no SNMP stop, reboot, start or switch-over, whatever the options and failover policy say), its DataMiner version
stays as it was, and its version history and the rollout's progress say "web upgrade"."""

from __future__ import annotations

from pathlib import Path

from dma_upgrade.adapters.access.tokens import Role
from dma_upgrade.adapters.packages.archive import build_package, inspect_package
from dma_upgrade.engine.agent_events import AgentVersionChanged, AgentWebUpgraded
from dma_upgrade.engine.packages import PackageKind, PackageManifest
from dma_upgrade.engine.records import PackageRecord
from dma_upgrade.engine.service import OptionOverrides
from dma_upgrade.engine.upgrade_events import AgentUpgradePlan, Step, UpgradeOptions
from dma_upgrade.engine.upgrade_machine import UpgradeState
from dma_upgrade.engine.versions import parse_version
from tests.conftest import FakeClock
from tests.e2e.cli import run_cli
from tests.integration.api.harness import ApiHarness
from tests.integration.rollout_harness import ACTOR, BACKUP, MAIN, PACKAGE_VERSION, START_VERSION, RolloutHarness
from tests.upgrade_states import put_in_doubt

WEB = PackageManifest.for_version(parse_version(PACKAGE_VERSION), PackageKind.WEB)
NOTE = (f"web upgrade: only the web components are updated, to {PACKAGE_VERSION}; DataMiner keeps running and its "
        f"version stays as it is (no SNMP stop, reboot, start or switch-over)")


def _upload_web(h: RolloutHarness) -> PackageRecord:
    path = build_package(WEB, h.tmp_path / "web")
    inspected = inspect_package(path)
    return h.service.record_upload(sha256=inspected.sha256, file_name=path.name, size=inspected.size,
                                   manifest=inspected.manifest, actor=ACTOR)


def test_a_web_plan_uploads_and_installs_only() -> None:
    everything = UpgradeOptions(stop_snmp=True, reboot=True, auto_start=True)
    assert AgentUpgradePlan(options=everything, web_only=True).steps == (Step.UPLOAD, Step.INSTALL)
    assert AgentUpgradePlan(options=everything, web_only=True, upload_only=True).steps == (Step.UPLOAD,)
    assert AgentUpgradePlan(options=everything).steps == (Step.UPLOAD, Step.STOP_SNMP, Step.INSTALL, Step.REBOOT,
                                                          Step.START)


def test_a_web_rollout_keeps_dataminer_and_its_version(harness: RolloutHarness) -> None:
    package = _upload_web(harness)
    head = harness.head()
    planned, rollout = harness.start_and_run(package=package, failover_policy="backup-first",
                                             overrides=OptionOverrides(reboot=True, stop_snmp=True, auto_start=False))

    assert rollout.state.value == "Completed"
    assert planned.notes == (NOTE,)
    assert all(a.plan.steps == (Step.UPLOAD, Step.INSTALL) and a.after == () and not a.plan.switch_over
               for a in planned.agents)
    assert not any("mixed versions" in w or "switch-over" in w for w in planned.warnings)
    for agent in planned.agents:
        upgrade = harness.upgrade(planned, agent.name)
        assert upgrade.state is UpgradeState.COMPLETED and not upgrade.manual_start_needed
        record = harness.service.agent(agent.name)
        assert record.version == START_VERSION and record.stopped_by_upgrade is None
        assert record.version_history == [START_VERSION, f"{PACKAGE_VERSION} (web upgrade)"]
    appended = [r.event for r in harness.store.read_all(head)]
    assert not any(isinstance(e, AgentVersionChanged) for e in appended)
    assert sorted(e.web_version for e in appended if isinstance(e, AgentWebUpgraded)) == [PACKAGE_VERSION] * 4
    steps = {step for _, step in harness.gateway.journal()}
    assert steps == {Step.UPLOAD, Step.INSTALL}
    for agent in planned.agents:  # the agents were told: DataMiner ran on, on its version
        simulated = harness.gateway.agent(agent.name)
        assert (simulated.version, simulated.dma_running) == (START_VERSION, True)
    assert {MAIN, BACKUP} <= {name for name, _ in harness.gateway.journal()}


def test_the_cli_shows_web_upgrade_in_history_and_progress(harness: RolloutHarness, db_url: str,
                                                          tmp_path: Path) -> None:
    package = _upload_web(harness)
    env = {"DMA_UPGRADE_DATA_DIR": str(tmp_path / "data"), "COLUMNS": "400"}
    shown = run_cli("upgrade", "start", "--package", package.sha256, "--agent", "dma-1", "--reboot", "--dry-run",
                    database_url=db_url, env=env)
    assert shown.returncode == 0, shown.stderr
    assert "upload → install " in shown.stdout and f"note: {NOTE}" in shown.stdout, shown.stdout
    planned, _ = harness.start_and_run(package=package, names=("dma-1",))
    history = run_cli("history", "agent", "dma-1", database_url=db_url, env=env)
    assert history.returncode == 0, history.stderr
    lines = history.stdout.strip().splitlines()
    assert [line.split(";", 1)[1] for line in lines] == [START_VERSION, f"{PACKAGE_VERSION} (web upgrade)"]
    progress = run_cli("progress", str(planned.rollout_id), database_url=db_url, env=env)
    assert progress.returncode == 0, progress.stderr
    assert "note: web upgrade: only the web components are updated" in progress.stdout, progress.stdout


def test_the_api_plans_a_web_upgrade(db_url: str, clock: FakeClock, tmp_path: Path) -> None:
    api = ApiHarness(db_url, clock, tmp_path)
    try:
        api.add_agents()
        response = api.upload(build_package(WEB, tmp_path / "web"))
        assert response.status_code == 201, response.text
        assert response.json()["kind"] == "Web"
        plan = api.client(Role.OPERATOR).post("/api/v1/rollouts/plan", json={
            "package": response.json()["sha256"], "cluster": "north", "reboot": True})
        assert plan.status_code == 200, plan.text
        assert {tuple(a["steps"]) for a in plan.json()["agents"]} == {("upload", "install")}
        assert NOTE in plan.json()["notes"]
    finally:
        api.close()


def test_an_install_in_doubt_resolved_as_applied_records_the_web_upgrade_not_a_version(
        harness: RolloutHarness) -> None:
    planned = harness.start(package=_upload_web(harness), names=("dma-1",))
    put_in_doubt(harness.service, planned, "dma-1", Step.INSTALL, "no answer")
    resolved = harness.service.resolve_doubt(planned.rollout_id, "dma-1", True, actor=ACTOR)
    assert resolved.version_after is None
    record = harness.service.agent("dma-1")
    assert record.version == START_VERSION
    assert record.version_history == [START_VERSION, f"{PACKAGE_VERSION} (web upgrade)"]
