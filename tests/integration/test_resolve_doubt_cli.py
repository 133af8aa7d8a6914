"""A step in doubt and a switch-over awaiting a manual start, seen and decided through the real command line:
``recover --dry-run`` and ``progress`` list them, ``upgrade resolve`` decides the doubt, and an engine that runs
the rollout afterwards goes on from the operator's decision. The states are built by appending the upgrade's
events through the service (``tests/upgrade_states.py``), as an engine that lost its agent would have left them."""

from __future__ import annotations

import json
from pathlib import Path

from dma_upgrade.engine.agent_events import AgentVersionChanged, agent_stream_id
from dma_upgrade.engine.service import OptionOverrides
from dma_upgrade.engine.upgrade_events import Step, StepDoubtResolved
from tests.e2e.cli import run_cli
from tests.integration.rollout_harness import BACKUP, MAIN, PACKAGE_VERSION, START_VERSION, RolloutHarness
from tests.upgrade_states import await_manual_start, put_in_doubt

WIDE = {"COLUMNS": "400"}
REASON = "no answer within 1800 s"


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {**WIDE, "DMA_UPGRADE_DATA_DIR": str(tmp_path / "data"), **extra}


def _agents_json(db_url: str, tmp_path: Path, rollout: str) -> dict[str, dict[str, object]]:
    result = run_cli("progress", rollout, "--json", database_url=db_url, env=_env(tmp_path))
    assert result.returncode == 0, result.stderr
    [view] = json.loads(result.stdout)
    return {a["agent"]: a for a in view["agents"]}


def test_a_step_in_doubt_is_listed_shown_and_resolved_as_applied_and_the_engine_goes_on_from_there(
        harness: RolloutHarness, db_url: str, tmp_path: Path) -> None:
    planned = harness.start(names=("dma-1", "dma-2"))
    rollout = str(planned.rollout_id)
    put_in_doubt(harness.service, planned, "dma-1", Step.INSTALL, REASON)
    head = harness.head()

    recovered = run_cli("recover", "--dry-run", database_url=db_url, env=_env(tmp_path))
    assert recovered.returncode == 0, recovered.stdout + recovered.stderr
    doubted = recovered.stdout.split("Steps in doubt", 1)[1]
    row = next(line for line in doubted.splitlines() if " dma-1 " in line)
    assert rollout in row and " install " in row and " 1 " in row and REASON in row, doubted
    plan_row = next(line for line in recovered.stdout.split("Steps in doubt")[0].splitlines() if " dma-1 " in line)
    assert "install (attempt 1) is in doubt" in plan_row and f"upgrade resolve {rollout} dma-1" in plan_row
    assert "Waiting for a manual start" not in recovered.stdout
    as_json = run_cli("recover", "--dry-run", "--output", "json", database_url=db_url, env=_env(tmp_path))
    assert as_json.returncode == 0, as_json.stderr
    in_doubt = next(row for row in json.loads(as_json.stdout) if row["agent"] == "dma-1")
    assert (in_doubt["rollout_id"], in_doubt["step_in_doubt"]) == (rollout, "install")
    assert "install (attempt 1) is in doubt" in in_doubt["would"]

    shown = run_cli("progress", rollout, database_url=db_url, env=_env(tmp_path))
    assert shown.returncode == 0, shown.stderr
    assert (f"in doubt: install (attempt 1): {REASON} — ask pending; resolve with dma-upgrade upgrade resolve"
            in shown.stdout), shown.stdout
    agents = _agents_json(db_url, tmp_path, rollout)
    assert (agents["dma-1"]["in_doubt"], agents["dma-1"]["last_error"]) == (True, REASON)
    assert agents["dma-2"]["in_doubt"] is False

    for flags in ((), ("--applied", "--not-applied")):
        refused = run_cli("upgrade", "resolve", rollout, "dma-1", *flags, database_url=db_url, env=_env(tmp_path))
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert refused.stderr.strip() == "error: give exactly one of --applied and --not-applied"
    unknown = run_cli("upgrade", "resolve", rollout, "dma-9", "--applied", database_url=db_url, env=_env(tmp_path))
    assert unknown.returncode == 3 and "not part of rollout" in unknown.stderr, unknown.stderr
    not_in_doubt = run_cli("upgrade", "resolve", rollout, "dma-2", "--not-applied", database_url=db_url,
                           env=_env(tmp_path))
    assert not_in_doubt.returncode == 5, not_in_doubt.stderr
    assert "no step is in doubt" in not_in_doubt.stderr
    assert harness.head() == head  # the dry run, the reads and every refusal appended nothing

    resolved = run_cli("upgrade", "resolve", rollout, "dma-1", "--applied", database_url=db_url,
                       env=_env(tmp_path, DMA_UPGRADE_ACTOR="carol"))
    assert resolved.returncode == 0, resolved.stdout + resolved.stderr
    assert resolved.stdout.strip() == (f"rollout {rollout}: dma-1 install (attempt 1) recorded as applied; the "
                                       f"agent runs {PACKAGE_VERSION}; the upgrade is Installing")
    appended = [r for r in harness.store.read_all() if r.position > head]
    assert [(type(r.event), r.metadata.actor) for r in appended] == [(AgentVersionChanged, "carol"),
                                                                     (StepDoubtResolved, "carol")]
    assert appended[0].stream_id == agent_stream_id("dma-1")
    assert harness.service.agent("dma-1").version == PACKAGE_VERSION
    assert _agents_json(db_url, tmp_path, rollout)["dma-1"]["in_doubt"] is False
    again = run_cli("upgrade", "resolve", rollout, "dma-1", "--applied", database_url=db_url, env=_env(tmp_path))
    assert again.returncode == 5, again.stderr

    assert harness.run(planned.rollout_id).state.value == "Completed"
    assert Step.INSTALL not in harness.steps_of("dma-1")  # done on the operator's word, never sent again
    assert Step.INSTALL in harness.steps_of("dma-2")
    assert harness.upgrade(planned, "dma-1").version_after == PACKAGE_VERSION


def test_a_step_resolved_as_not_applied_is_sent_again_by_the_engine(
        harness: RolloutHarness, db_url: str, tmp_path: Path) -> None:
    planned = harness.start(names=("dma-1",))
    rollout = str(planned.rollout_id)
    put_in_doubt(harness.service, planned, "dma-1", Step.INSTALL, REASON)

    resolved = run_cli("upgrade", "resolve", rollout, "dma-1", "--not-applied", database_url=db_url,
                       env=_env(tmp_path))

    assert resolved.returncode == 0, resolved.stderr
    assert "recorded as not applied: the engine sends it again under the same key" in resolved.stdout
    assert harness.service.agent("dma-1").version == START_VERSION
    assert harness.run(planned.rollout_id).state.value == "Completed"
    assert harness.steps_of("dma-1").count(Step.INSTALL) == 1
    assert harness.service.agent("dma-1").version == PACKAGE_VERSION


def test_a_switch_over_awaiting_a_manual_start_is_listed_by_recover_and_shown_with_the_plans_notes(
        harness: RolloutHarness, db_url: str, tmp_path: Path) -> None:
    planned = harness.start(names=(MAIN, BACKUP), failover_policy="backup-first",
                            overrides=OptionOverrides(auto_start=False))
    assert planned.notes
    await_manual_start(harness.service, planned, BACKUP)

    recovered = run_cli("recover", "--dry-run", database_url=db_url, env=_env(tmp_path))
    assert recovered.returncode == 0, recovered.stdout + recovered.stderr
    waiting = recovered.stdout.split("Waiting for a manual start before the switch-over", 1)[1]
    row = next(line for line in waiting.splitlines() if f" {BACKUP} " in line)
    assert str(planned.rollout_id) in row and f"dma-upgrade agents start {BACKUP}" in row
    assert f" {MAIN} " not in waiting
    assert "Steps in doubt" not in recovered.stdout

    shown = run_cli("progress", str(planned.rollout_id), database_url=db_url, env=_env(tmp_path))
    assert shown.returncode == 0, shown.stderr
    assert f"waiting for a manual start of {BACKUP} before the switch-over" in shown.stdout
    for note in planned.notes:
        assert f"note: {note}" in shown.stdout
    agents = _agents_json(db_url, tmp_path, str(planned.rollout_id))
    assert agents[BACKUP]["awaiting_manual_start"] == BACKUP and agents[MAIN]["awaiting_manual_start"] is None
    assert agents[BACKUP]["notes"] == list(next(a.notes for a in planned.agents if a.name == BACKUP))
