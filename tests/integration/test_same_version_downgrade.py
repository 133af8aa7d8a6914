"""Same version and downgrades (issue 15, item 6): refused by default when a rollout is planned, permitted by
``--reinstall`` and ``--allow-downgrade`` (CLI) or ``reinstall`` and ``allow_downgrade`` (API), and the choice is
recorded on ``RolloutPlanned``. Versions are compared parsed; upload-only rollouts install nothing, so neither
rule applies to them."""

from __future__ import annotations

from pathlib import Path
from uuid import uuid4

import pytest

from dma_upgrade.adapters.access.tokens import Role
from dma_upgrade.engine.errors import InvalidInput
from dma_upgrade.engine.rollout_events import RolloutPlanned
from dma_upgrade.engine.upgrade_events import UpgradeOptions
from dma_upgrade.engine.version_choice import VersionChoice
from dma_upgrade.engine.versions import parse_version
from tests.conftest import FakeClock
from tests.e2e.cli import run_cli
from tests.integration.api.harness import ApiHarness
from tests.integration.rollout_harness import ACTOR, START_VERSION, RolloutHarness

OLDER = "10.3.0.0-13500"
SAME_NOTATION = "10.4.0.0(CU0)-14112"
"""The version the agents run, written another way."""


def _refused(h: RolloutHarness, match: str, **spec: object) -> None:
    head = h.head()
    with pytest.raises(InvalidInput, match=match) as caught:
        h.start(**spec)
    assert "\n" not in str(caught.value)
    assert h.head() == head


def test_a_same_version_upgrade_is_refused_naming_every_agent(harness: RolloutHarness) -> None:
    package = harness.upload(SAME_NOTATION)
    _refused(harness, r"^agent dma-1 runs 10\.4\.0\.0-14112 already \(pass --reinstall to install the same version "
                      r"again\); agent dma-2 runs .*; agent dma-backup runs", package=package)


def test_reinstall_permits_it_and_is_recorded(harness: RolloutHarness) -> None:
    package = harness.upload(SAME_NOTATION)
    planned, rollout = harness.start_and_run(package=package, names=("dma-1",),
                                             version_choice=VersionChoice(reinstall=True))
    assert (planned.reinstall, planned.allow_downgrade) == (True, False)
    assert planned.agents[0].warnings == (
        "agent dma-1: reinstalls 10.4.0.0(CU0)-14112, the version it runs (--reinstall)",)
    assert rollout.state.value == "Completed"
    assert parse_version(harness.service.agent("dma-1").version) == parse_version(START_VERSION)


def test_a_downgrade_is_refused_and_permitted_by_allow_downgrade(harness: RolloutHarness) -> None:
    package = harness.upload(OLDER)
    _refused(harness, r"^agent dma-1: 10\.3\.0\.0-13500 is a downgrade from 10\.4\.0\.0-14112 \(pass "
                      r"--allow-downgrade to install the older version\)", package=package, names=("dma-1",))
    _refused(harness, "--allow-downgrade", package=package, names=("dma-1",),
             version_choice=VersionChoice(reinstall=True))
    planned, rollout = harness.start_and_run(package=package, names=("dma-1",),
                                             version_choice=VersionChoice(allow_downgrade=True))
    assert (planned.reinstall, planned.allow_downgrade) == (False, True)
    assert "agent dma-1: 10.3.0.0-13500 is a downgrade from 10.4.0.0-14112 (--allow-downgrade)" in planned.warnings
    assert rollout.state.value == "Completed"
    assert harness.service.agent("dma-1").version == OLDER


def test_an_upload_only_rollout_is_neither(harness: RolloutHarness) -> None:
    planned = harness.start(package=harness.upload(START_VERSION), names=("dma-1",), upload_only=True)
    assert (planned.reinstall, planned.allow_downgrade, planned.warnings) == (False, False, ())


def test_a_rollout_planned_before_the_choice_was_recorded_folds_as_neither() -> None:
    planned = RolloutPlanned.model_validate({
        "rollout_id": str(uuid4()), "package_sha256": "0" * 64, "package_version": "10.4.9.0-14794",
        "options": UpgradeOptions().model_dump(),
        "upload_only": False, "failover_policy": "simultaneous", "agents": [], "max_concurrent": 1,
        "max_errors": 0})
    assert (planned.reinstall, planned.allow_downgrade) == (False, False)


def test_the_cli_refuses_with_exit_2_and_plans_with_the_flags(harness: RolloutHarness, db_url: str,
                                                              tmp_path: Path) -> None:
    package = harness.upload(START_VERSION)
    env = {"DMA_UPGRADE_DATA_DIR": str(tmp_path / "data"), "COLUMNS": "400", "DMA_UPGRADE_ACTOR": ACTOR}
    args = ("upgrade", "start", "--package", package.sha256, "--agent", "dma-1")
    head = harness.head()
    refused = run_cli(*args, database_url=db_url, env=env)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert refused.stderr.strip() == ("error: agent dma-1 runs 10.4.0.0-14112 already (pass --reinstall to install "
                                      "the same version again)")
    assert harness.head() == head
    shown = run_cli(*args, "--reinstall", "--dry-run", database_url=db_url, env=env)
    assert shown.returncode == 0, shown.stderr
    assert " · reinstall" in shown.stdout and "warning: agent dma-1: reinstalls 10.4.0.0-14112" in shown.stdout
    assert harness.head() == head
    started = run_cli(*args, "--reinstall", database_url=db_url, env=env)
    assert started.returncode == 0, started.stderr
    [planned] = [r.event for r in harness.store.read_all() if isinstance(r.event, RolloutPlanned)]
    assert (planned.reinstall, planned.allow_downgrade) == (True, False)


def test_the_api_refuses_with_422_and_records_the_choice(db_url: str, clock: FakeClock, tmp_path: Path) -> None:
    api = ApiHarness(db_url, clock, tmp_path)
    try:
        api.add_agents()
        package = api.upload_package(OLDER)["sha256"]
        operator = api.client(Role.OPERATOR)
        head = api.head()
        for path in ("/api/v1/rollouts/plan", "/api/v1/rollouts"):
            response = operator.post(path, json={"package": package, "cluster": "north"})
            assert response.status_code == 422, response.text
            assert response.json()["detail"].startswith("agent dma-1: 10.3.0.0-13500 is a downgrade from ")
        assert api.head() == head
        body = {"package": package, "cluster": "north", "allow_downgrade": True}
        plan = operator.post("/api/v1/rollouts/plan", json=body)
        assert plan.status_code == 200, plan.text
        assert (plan.json()["allow_downgrade"], plan.json()["reinstall"]) == (True, False)
        assert api.head() == head
        started = api.start_rollout(**body)
        assert started["allow_downgrade"] is True
        [planned] = [r.event for r in api.container.store.read_all(head) if isinstance(r.event, RolloutPlanned)]
        assert (planned.reinstall, planned.allow_downgrade) == (False, True)
    finally:
        api.close()
