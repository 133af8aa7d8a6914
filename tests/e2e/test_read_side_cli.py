"""The read side through the real CLI: progress now and in the past, the projections, the upgrade history.

One demo run (a completed 6-agent rollout on a fresh embedded database) is made per module; each test
works on its own copy of that data folder, so commands that move checkpoints cannot affect another test.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from dma_upgrade.adapters.clock import short_id
from tests.e2e.cli import run_cli

PROJECTIONS = ("progress", "package_history", "inventory", "pending_timers")
FROM_VERSION = "10.4.0.0-14112"
TO_VERSION = "10.4.9.0-14794"


@dataclass(frozen=True)
class Demo:
    """A data folder holding the demo's database, and what its audit export says about it."""

    data_dir: Path
    rollout_id: str
    events: list[dict[str, Any]]

    @property
    def env(self) -> dict[str, str]:
        return {"DMA_UPGRADE_DATA_DIR": str(self.data_dir)}

    def cli(self, *args: str, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return run_cli(*args, env={**self.env, **(env_extra or {})})

    def ok(self, *args: str) -> str:
        result = self.cli(*args)
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    def position_of(self, event_type: str) -> int:
        return next(int(e["position"]) for e in self.events if e["event_type"] == event_type)

    def completions(self) -> list[dict[str, Any]]:
        """The rollout's AgentUpgradeCompleted events, in log order."""
        return [e for e in self.events
                if e["event_type"] == "AgentUpgradeCompleted" and e["correlation_id"] == self.rollout_id]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    data_dir = tmp_path_factory.mktemp("demo") / "data"
    result = run_cli("demo", "--data-dir", str(data_dir), "--speed", "0")
    assert result.returncode == 0, result.stdout + result.stderr
    exported = run_cli("audit", "export", "--format", "jsonl", env={"DMA_UPGRADE_DATA_DIR": str(data_dir)})
    assert exported.returncode == 0, exported.stderr
    lines = [json.loads(line) for line in exported.stdout.splitlines() if line.strip()]
    events = [line for line in lines if "position" in line]
    planned = next(e for e in events if e["event_type"] == "RolloutPlanned")
    return Demo(data_dir, planned["stream_id"].removeprefix("rollout-"), events)


@pytest.fixture
def demo(pristine: Demo, tmp_path: Path) -> Demo:
    """A private copy of the demo's data folder."""
    copy = tmp_path / "data"
    shutil.copytree(pristine.data_dir, copy)
    return Demo(copy, pristine.rollout_id, pristine.events)


def _one_error_line(result: subprocess.CompletedProcess[str], code: int, *fragments: str) -> None:
    assert result.returncode == code, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    for fragment in fragments:
        assert fragment in lines[0]
    assert "Traceback" not in result.stderr


def _progress_json(demo: Demo, *args: str) -> dict[str, Any]:
    [view] = json.loads(demo.ok("progress", demo.rollout_id, "--json", *args))
    assert isinstance(view, dict)
    return view


def _status(demo: Demo) -> dict[str, tuple[int, int, int]]:
    """``projections status`` as {name: (checkpoint, head, lag in events)}."""
    table: dict[str, tuple[int, int, int]] = {}
    for line in demo.ok("projections", "status").splitlines():
        cells = [c.strip() for c in line.split("│")[1:-1]]
        if cells and cells[0] in PROJECTIONS:
            table[cells[0]] = (int(cells[1]), int(cells[2]), int(cells[3]))
    assert set(table) == set(PROJECTIONS)
    return table


def _verified_head(demo: Demo) -> int:
    match = re.search(r"head [0-9a-f]{64}@(\d+)", demo.ok("audit", "verify"))
    assert match is not None
    return int(match.group(1))


# --- progress, now -------------------------------------------------------------------------------------------


def test_progress_shows_every_agent_completed_and_the_totals(demo: Demo) -> None:
    shown = demo.ok("progress")
    assert f"Rollout {demo.rollout_id} · {TO_VERSION} · Completed" in shown
    for agent in ("dma-01", "dma-02", "dma-03", "dma-04", "dma-main", "dma-backup"):
        [row] = [line for line in shown.splitlines() if f"│ {agent} " in line]
        assert "Completed" in row and "100%" in row
    assert "6 completed · 0 failed · 0 in flight · 0 waiting · 0 cancelled" in shown


def test_progress_json_lists_six_completed_agents_with_every_planned_step_done(demo: Demo) -> None:
    view = _progress_json(demo)
    assert view["rollout_id"] == demo.rollout_id
    assert view["state"] == "Completed"
    assert len(view["agents"]) == 6
    for agent in view["agents"]:
        assert agent["state"] == "Completed"
        assert agent["steps_done"] == agent["steps_planned"] > 0
    assert view["completed"] == 6


def test_following_a_completed_rollout_when_piped_prints_a_line_for_it_and_each_agent_and_exits_0(
        demo: Demo) -> None:
    lines = demo.ok("progress", demo.rollout_id, "--follow").splitlines()

    assert lines[0] == (f"rollout {demo.rollout_id}: Completed · 6 completed · 0 failed · 0 in flight · 0 waiting · "
                        f"0 cancelled")
    assert [line.split(":", 1)[1] for line in lines[1:]] == [" Completed 100% · done"] * 6
    assert {line.split(":")[0].split()[-1] for line in lines[1:]} == {
        "dma-01", "dma-02", "dma-03", "dma-04", "dma-main", "dma-backup"}


def test_progress_of_an_unknown_rollout_is_not_found(demo: Demo) -> None:
    _one_error_line(demo.cli("progress", "00000000-0000-0000-0000-000000000000"), 3, "unknown rollout")


# --- progress, in the past -----------------------------------------------------------------------------------


def test_at_the_rollout_started_position_no_agent_is_completed(demo: Demo) -> None:
    started = demo.position_of("RolloutStarted")
    view = _progress_json(demo, "--at-position", str(started))
    assert view["state"] == "Running"
    assert view["completed"] == 0
    assert len(view["agents"]) == 6
    assert {a["state"] for a in view["agents"]} == {"Scheduled"}
    shown = demo.ok("progress", demo.rollout_id, "--at-position", str(started))
    assert "· Running" in shown
    assert "0 completed" in shown


def test_at_a_middle_position_the_rollout_runs_with_the_agents_completed_so_far(demo: Demo) -> None:
    completions = demo.completions()
    assert len(completions) == 6
    middle = completions[2]["position"]
    done_by_then = sum(1 for e in completions if e["position"] <= middle)
    view = _progress_json(demo, "--at-position", str(middle))
    assert view["state"] == "Running"
    assert view["completed"] == done_by_then == 3
    assert sum(a["state"] == "Completed" for a in view["agents"]) == done_by_then
    shown = demo.ok("progress", demo.rollout_id, "--at-position", str(middle))
    assert "· Running" in shown
    assert f"{done_by_then} completed" in shown


def test_at_the_head_position_the_past_equals_the_present(demo: Demo) -> None:
    head = demo.events[-1]["position"]
    assert _progress_json(demo, "--at-position", str(head)) == _progress_json(demo)


def test_before_the_rollout_was_planned_it_did_not_exist_yet(demo: Demo) -> None:
    before = demo.position_of("RolloutPlanned") - 1
    _one_error_line(demo.cli("progress", demo.rollout_id, "--at-position", str(before)), 3, "did not exist yet")


def test_as_of_a_time_between_first_and_last_event_shows_the_rollout_as_it_was(demo: Demo) -> None:
    completions = demo.completions()
    moment = completions[1]["recorded_at"]
    at = datetime.fromisoformat(moment)
    done_by_then = sum(1 for e in completions if datetime.fromisoformat(e["recorded_at"]) <= at)
    assert 1 < done_by_then < 6
    view = _progress_json(demo, "--as-of", moment)
    assert view["state"] == "Running"
    assert view["completed"] == done_by_then
    assert sum(a["state"] == "Completed" for a in view["agents"]) == done_by_then


def test_as_of_before_the_first_event_is_refused(demo: Demo) -> None:
    _one_error_line(demo.cli("progress", demo.rollout_id, "--as-of", "2000-01-01T00:00:00Z"), 2,
                    "before the first event")


def test_as_of_in_the_future_is_refused(demo: Demo) -> None:
    _one_error_line(demo.cli("progress", demo.rollout_id, "--as-of", "2999-01-01"), 2, "in the future")


def test_as_of_garbage_is_refused(demo: Demo) -> None:
    _one_error_line(demo.cli("progress", demo.rollout_id, "--as-of", "garbage"), 2, "--as-of", "'garbage'")


@pytest.mark.parametrize("where", ["zero", "past the head"])
def test_at_position_outside_the_log_is_refused(demo: Demo, where: str) -> None:
    head = demo.events[-1]["position"]
    position = 0 if where == "zero" else head + 1
    _one_error_line(demo.cli("progress", demo.rollout_id, "--at-position", str(position)), 2,
                    f"between 1 and {head}", f"got {position}")


def test_as_of_without_a_rollout_is_refused(demo: Demo) -> None:
    _one_error_line(demo.cli("progress", "--as-of", demo.events[-1]["recorded_at"]), 2, "need a ROLLOUT")


def test_as_of_for_an_unknown_rollout_is_not_found(demo: Demo) -> None:
    result = demo.cli("progress", "00000000-0000-0000-0000-000000000000", "--at-position", "5")
    _one_error_line(result, 3, "00000000-0000-0000-0000-000000000000")


# --- projections ---------------------------------------------------------------------------------------------


def test_after_the_demo_the_projections_it_did_not_read_lag_behind_the_head(demo: Demo) -> None:
    head = _verified_head(demo)
    status = _status(demo)
    for checkpoint, shown_head, lag in status.values():
        assert shown_head == head
        assert lag == head - checkpoint
    assert status["progress"] == (head, head, 0)
    for name in ("package_history", "inventory", "pending_timers"):
        assert status[name][2] > 0, name


def test_projections_run_brings_every_projection_to_the_head(demo: Demo) -> None:
    head = _verified_head(demo)
    applied = demo.ok("projections", "run")
    assert "inventory: " in applied and "events applied" in applied
    assert _status(demo) == {name: (head, head, 0) for name in PROJECTIONS}
    assert "progress: 0 events applied" in demo.ok("projections", "run")


def test_a_rebuild_gives_the_same_progress_json_as_before(demo: Demo) -> None:
    before = demo.ok("progress", "--json")
    rebuilt = demo.ok("projections", "rebuild")
    head = _verified_head(demo)
    for name in PROJECTIONS:
        assert f"{name}: rebuilt from {head} events" in rebuilt
    assert demo.ok("progress", "--json") == before
    assert _status(demo) == {name: (head, head, 0) for name in PROJECTIONS}


def test_rebuilding_one_projection_rebuilds_only_it(demo: Demo) -> None:
    head = _verified_head(demo)
    assert demo.ok("projections", "rebuild", "inventory").strip() == f"inventory: rebuilt from {head} events"
    assert _status(demo)["package_history"][0] == 0


def test_rebuilding_an_unknown_projection_names_the_known_ones(demo: Demo) -> None:
    _one_error_line(demo.cli("projections", "rebuild", "nope"), 3, "'nope'",
                    "known: progress, package_history, inventory, pending_timers")


# --- history -------------------------------------------------------------------------------------------------


def test_history_packages_lists_the_package_completed_with_its_rollout(demo: Demo) -> None:
    shown = demo.ok("history", "packages")
    [row] = [line for line in shown.splitlines() if TO_VERSION in line]
    cells = [c.strip() for c in row.split("│")[1:-1]]
    assert cells[1] == TO_VERSION
    assert cells[4] == "demo"
    assert cells[6] == "completed"
    assert cells[7] == f"{short_id(demo.rollout_id)} completed"


def test_piped_tables_show_every_value_in_full_whatever_the_terminal_width(demo: Demo) -> None:
    result = demo.cli("history", "packages", env_extra={"COLUMNS": "80"})

    assert result.returncode == 0, result.stderr
    shown = result.stdout
    [row] = [line for line in shown.splitlines() if TO_VERSION in line]
    assert len(row) > 80
    assert [c.strip() for c in row.split("│")[1:-1]][6] == "completed"
    assert "…" not in shown


def test_history_agent_prints_the_version_history_file_of_the_agent(demo: Demo) -> None:
    lines = demo.ok("history", "agent", "dma-main").splitlines()
    registered = next(e for e in demo.events
                      if e["event_type"] == "AgentRegistered" and e["payload"]["name"] == "dma-main")
    changed = next(e for e in demo.events
                   if e["event_type"] == "AgentVersionChanged" and e["stream_id"] == "agent-dma-main")

    def stamp(event: dict[str, Any]) -> str:
        return f"{datetime.fromisoformat(event['recorded_at']):%Y-%m-%d %H:%M:%S}"

    assert lines == [f"{stamp(registered)};{FROM_VERSION}", f"{stamp(changed)};{TO_VERSION}"]


def test_a_history_command_on_the_local_database_catches_its_read_model_up_first_and_shows_it_fresh(
        demo: Demo) -> None:
    head = _verified_head(demo)
    assert _status(demo)["package_history"][2] > 0  # the demo left it behind

    result = demo.cli("history", "packages")

    assert result.returncode == 0, result.stderr
    assert f"{short_id(demo.rollout_id)} completed" in result.stdout
    assert "behind the log" not in result.stderr
    status = _status(demo)
    assert status["package_history"] == (head, head, 0)  # the command's one-shot catch-up, not the query
    assert status["inventory"][2] > 0  # it caught up only the read model it reads


def test_history_of_an_unknown_agent_is_not_found(demo: Demo) -> None:
    _one_error_line(demo.cli("history", "agent", "dma-nope"), 3, "unknown agent 'dma-nope'")
