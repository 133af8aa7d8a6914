"""The main job and the operator's command-line flow, through the real CLI."""

from __future__ import annotations

import re
from pathlib import Path

from tests.e2e.cli import run_cli

PACKAGE = "DataMiner 10.4.9.0-14794 Full Upgrade.dmupgrade"


def test_the_demo_upgrades_a_six_agent_cluster_and_verifies_the_audit_trail(tmp_path: Path) -> None:
    result = run_cli("demo", "--data-dir", str(tmp_path / "demo"), "--speed", "0")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "registered 6 agents" in result.stdout
    assert result.stdout.count("10.4.0.0-14112 → 10.4.9.0-14794") == 6
    assert "hash chain intact" in result.stdout
    assert "Summary" in result.stdout
    assert _summary_rows(result.stdout)[0] == ["agent", "role", "from", "to", "state", "steps done", "step retries",
                                                "installing (s)", "whole upgrade (s)"]
    assert {tuple(row[4:7]) for row in _summary_rows(result.stdout)[1:]} == {("Completed", "5 of 5", "0"),
                                                                                ("Completed", "6 of 6", "0")}


def _summary_rows(printed: str) -> list[list[str]]:
    """The demo's summary table: its header, then a row per agent, each as its cells."""
    table = printed.split("Summary", 1)[1].split("Upgrade history", 1)[0]
    return [[cell.strip() for cell in re.split("[│┃]", line)[1:-1]] for line in table.splitlines()
            if line.startswith(("│", "┃"))]


def test_the_demo_refuses_a_folder_that_already_holds_a_database(tmp_path: Path) -> None:
    (tmp_path / "dma-upgrade.db").write_bytes(b"")
    result = run_cli("demo", "--data-dir", str(tmp_path), "--speed", "0")
    assert result.returncode == 2
    assert "fresh folder" in result.stderr


def test_an_operator_registers_uploads_plans_and_upgrades_a_cluster(db_url: str, tmp_path: Path) -> None:
    env = {"DMA_UPGRADE_DATA_DIR": str(tmp_path / "data")}

    def cli(*args: str) -> str:
        result = run_cli(*args, database_url=db_url, env=env)
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    cli("agents", "add", "dma-01", "--address", "10.0.0.11", "--cluster", "north", "--version", "10.4.0.0-14112")
    cli("agents", "add", "dma-02", "--address", "10.0.0.12", "--cluster", "north", "--version", "10.3.0.0-13000")
    assert "warning: cluster north runs mixed versions" in cli("agents", "list")
    cli("packages", "build", "--version", "10.4.9.0-14794", "--output", str(tmp_path))
    cli("packages", "upload", str(tmp_path / PACKAGE))
    assert "available" in cli("packages", "list")
    plan = cli("upgrade", "start", "--package", PACKAGE, "--all-agents-in-cluster", "north", "--no-stop-snmp",
               "--dry-run")
    assert "dry run" in plan
    assert "SNMP both use UDP port 161" in plan
    assert "upload → install → start" in plan
    done = cli("upgrade", "start", "--package", PACKAGE, "--all-agents-in-cluster", "north", "--no-delayed-start",
               "--wait")
    assert "Completed" in done
    assert "completed" in cli("packages", "list")
    reused = run_cli("upgrade", "start", "--package", PACKAGE, "--agent", "dma-01", database_url=db_url, env=env)
    assert reused.returncode == 4
    assert "cannot execute another upgrade" in reused.stderr
    listing = cli("agents", "list")
    assert listing.count("10.4.9.0-14794") == 2
    assert "mixed versions" not in listing


def test_a_file_that_is_not_a_package_is_refused_and_nothing_is_stored(sqlite_url: str, tmp_path: Path) -> None:
    bogus = tmp_path / "notes.dmupgrade"
    bogus.write_text("not a zip")
    data = tmp_path / "data"
    result = run_cli("packages", "upload", str(bogus), database_url=sqlite_url,
                     env={"DMA_UPGRADE_DATA_DIR": str(data)})
    assert result.returncode == 2
    assert "not a zip" in result.stderr
    assert not (data / "packages").exists()
    assert "verified 0 events" in run_cli("audit", "verify", database_url=sqlite_url).stdout


def test_unknown_cluster_and_policy_are_one_line_errors(sqlite_url: str, tmp_path: Path) -> None:
    env = {"DMA_UPGRADE_DATA_DIR": str(tmp_path / "data")}
    run_cli("packages", "build", "--version", "10.4.9.0-14794", "--output", str(tmp_path))
    assert run_cli("packages", "upload", str(tmp_path / PACKAGE), database_url=sqlite_url, env=env).returncode == 0
    unknown = run_cli("upgrade", "start", "--package", PACKAGE, "--all-agents-in-cluster", "south",
                      database_url=sqlite_url, env=env)
    assert unknown.returncode == 3
    assert "unknown cluster 'south'" in unknown.stderr
    policy = run_cli("upgrade", "start", "--package", PACKAGE, "--agent", "x", "--failover-policy", "sideways",
                     database_url=sqlite_url, env=env)
    assert policy.returncode == 2
    assert "unknown failover policy" in policy.stderr


def test_auto_start_off_leaves_agents_stopped_until_started_by_hand(sqlite_url: str, tmp_path: Path) -> None:
    env = {"DMA_UPGRADE_DATA_DIR": str(tmp_path / "data")}

    def cli(*args: str, code: int = 0) -> str:
        result = run_cli(*args, database_url=sqlite_url, env=env)
        assert result.returncode == code, result.stdout + result.stderr
        return result.stdout + result.stderr

    cli("agents", "add", "dma-01", "--address", "10.0.0.11", "--cluster", "north", "--version", "10.4.0.0-14112")
    cli("packages", "build", "--version", "10.4.9.0-14794", "--output", str(tmp_path))
    cli("packages", "upload", str(tmp_path / PACKAGE))
    cli("upgrade", "start", "--package", PACKAGE, "--agent", "dma-01", "--no-auto-start", "--wait")
    assert "needs a manual start" in cli("agents", "list")
    assert "started agent dma-01" in cli("agents", "start", "dma-01")
    assert "needs a manual start" not in cli("agents", "list")
    assert "was not left stopped" in cli("agents", "start", "dma-01", code=4)


def test_a_dry_run_of_one_pair_member_under_backup_first_is_refused_unless_a_partial_pair_is_allowed(
        sqlite_url: str, tmp_path: Path) -> None:
    env = {"DMA_UPGRADE_DATA_DIR": str(tmp_path / "data")}

    def cli(*args: str, code: int = 0) -> str:
        result = run_cli(*args, database_url=sqlite_url, env=env)
        assert result.returncode == code, result.stdout + result.stderr
        return " ".join((result.stdout + result.stderr).split())  # rich wraps long lines

    cli("agents", "add", "dma-main", "--address", "10.0.0.21", "--cluster", "north", "--version", "10.4.0.0-14112",
        "--failover-partner", "dma-backup", "--failover-role", "main")
    cli("agents", "add", "dma-backup", "--address", "10.0.0.22", "--cluster", "north", "--version", "10.4.0.0-14112",
        "--failover-partner", "dma-main", "--failover-role", "backup")
    cli("packages", "build", "--version", "10.4.9.0-14794", "--output", str(tmp_path))
    cli("packages", "upload", str(tmp_path / PACKAGE))
    one_member = ("upgrade", "start", "--package", PACKAGE, "--agent", "dma-main", "--failover-policy", "backup-first",
                  "--dry-run")
    before = cli("audit", "verify")

    refusal = cli(*one_member, code=2)
    allowed = cli(*one_member, "--allow-partial-pair")
    whole_pair = cli("upgrade", "start", "--package", PACKAGE, "--all-agents-in-cluster", "north",
                     "--failover-policy", "backup-first", "--no-auto-start", "--dry-run")

    assert "agent dma-main: its failover partner dma-backup is not in this rollout" in refusal
    assert "--allow-partial-pair" in refusal
    assert "dry run" in allowed
    assert "warning: agent dma-main: upgraded without its failover partner dma-backup (--allow-partial-pair): " \
           "no switch-over; if dma-main is the active member the pair is down during its upgrade" in allowed
    assert "note: agent dma-backup: Auto Start is off: the switch-over waits for a manual start of dma-backup " \
           "(dma-upgrade agents start dma-backup)" in whole_pair
    assert cli("audit", "verify") == before  # a dry run records nothing
