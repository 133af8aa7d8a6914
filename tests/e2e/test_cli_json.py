"""``--output json`` on every read command, through the real CLI on the demo's database.

Each command's standard output is one JSON document of the API's shapes (``adapters/shapes``): it is read back
with ``json.loads``, validated with the shape's pydantic model, and checked for some values of the demo.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import TypeAdapter

from dma_upgrade.adapters.shapes.models import (
    AgentOut,
    AuditVerifyOut,
    EnginesOut,
    PackageHistoryOut,
    PackageOut,
    ProjectionStatusOut,
    RecoveryOut,
    RolloutProgressOut,
    VersionHistoryOut,
)
from dma_upgrade.adapters.shapes.paths import PathOut
from tests.e2e import test_read_side_cli as read_side
from tests.e2e.test_read_side_cli import FROM_VERSION, TO_VERSION, Demo

pristine = read_side.pristine
"""The demo's database, made once for this module."""
demo = read_side.demo
"""A private copy of it for each test."""

SHAPES: list[tuple[tuple[str, ...], Any]] = [
    (("agents", "list"), list[AgentOut]),
    (("packages", "list"), list[PackageOut]),
    (("history", "packages"), list[PackageHistoryOut]),
    (("history", "agent", "dma-01"), list[VersionHistoryOut]),
    (("engines",), EnginesOut),
    (("recover", "--dry-run"), list[RecoveryOut]),
    (("settings", "list"), dict[str, str]),
    (("audit", "verify"), AuditVerifyOut),
    (("projections", "status"), list[ProjectionStatusOut]),
    (("upgrade", "path", "--to", "10.5.0.0-15000", "--from", FROM_VERSION), list[PathOut]),
    (("progress",), list[RolloutProgressOut]),
]


def read_json(demo: Demo, *args: str) -> Any:
    """The command's stdout as one JSON document (it must hold nothing else)."""
    return json.loads(demo.ok(*args))


@pytest.mark.parametrize(("command", "shape"), SHAPES, ids=[" ".join(c) for c, _ in SHAPES])
def test_every_read_command_prints_its_api_shape_as_one_json_document(
        demo: Demo, command: tuple[str, ...], shape: Any) -> None:
    document = read_json(demo, *command, "--output", "json")
    validated = TypeAdapter(shape).validate_python(document)
    assert TypeAdapter(shape).dump_python(validated, mode="json") == document


@pytest.mark.parametrize(("command", "shape"), SHAPES[:3], ids=[" ".join(c) for c, _ in SHAPES[:3]])
def test_json_is_the_short_form_of_output_json(demo: Demo, command: tuple[str, ...], shape: Any) -> None:
    assert read_json(demo, *command, "--json") == read_json(demo, *command, "--output", "json")


def test_the_agents_are_the_demos_six_on_the_new_version(demo: Demo) -> None:
    agents = read_json(demo, "agents", "list", "--output", "json")
    assert {a["version"] for a in agents} == {TO_VERSION}
    assert len(agents) == 6
    assert {a["failover_role"] for a in agents} == {None, "main", "backup"}


def test_the_package_history_shows_the_completed_package_and_its_rollout(demo: Demo) -> None:
    [package] = read_json(demo, "history", "packages", "--output", "json")
    assert (package["version"], package["status"]) == (TO_VERSION, "completed")
    assert [r["rollout_id"] for r in package["rollouts"]] == [demo.rollout_id]


def test_an_agents_version_history_lists_the_old_then_the_new_version(demo: Demo) -> None:
    lines = read_json(demo, "history", "agent", "dma-01", "--output", "json")
    assert [line["version"] for line in lines] == [FROM_VERSION, TO_VERSION]


def test_the_audit_verdict_is_ok_with_every_event_verified(demo: Demo) -> None:
    verdict = read_json(demo, "audit", "verify", "--output", "json")
    assert verdict["ok"] is True
    assert verdict["verified"] == len(demo.events)
    assert verdict["head"].endswith(f"@{len(demo.events)}")


def test_settings_are_the_apis_object_of_setting_to_value(demo: Demo) -> None:
    settings = read_json(demo, "settings", "list", "--output", "json")
    assert settings["failover-default-policy"] in {"simultaneous", "backup-first", "main-first"}
    assert settings["reboot"] in {"on", "off"}


def test_nothing_to_recover_is_an_empty_list_and_no_engine_an_empty_overview(demo: Demo) -> None:
    assert read_json(demo, "recover", "--dry-run", "--output", "json") == []
    assert read_json(demo, "engines", "--output", "json") == {"engines": [], "upgrades_waiting": 0}


def test_progress_keeps_json_as_an_alias(demo: Demo) -> None:
    [view] = read_json(demo, "progress", "--output", "json")
    assert read_json(demo, "progress", "--json") == [view]
    assert (view["rollout_id"], view["state"], view["completed"]) == (demo.rollout_id, "Completed", 6)


@pytest.mark.parametrize("command", [("agents", "list"), ("audit", "verify"), ("progress",)], ids=" ".join)
def test_an_unknown_output_format_is_one_error_line_and_exit_2(demo: Demo, command: tuple[str, ...]) -> None:
    result = demo.cli(*command, "--output", "yaml")
    assert result.returncode == 2
    assert result.stderr == "error: --output must be table or json, got 'yaml'\n"
    assert result.stdout == ""
