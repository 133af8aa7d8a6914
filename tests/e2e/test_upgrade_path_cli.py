"""The real command line: version texts, the mixed-version warning, SNMP ports, the upgrade-path advisor and the
path check of a rollout (``--skip-path-check``)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.e2e.cli import run_cli

CONFLICT = "Stop SNMP is off and SLSNMPAgent and Windows SNMP both use UDP port"


class Cli:
    """``dma-upgrade`` on one database and data directory."""

    def __init__(self, database_url: str, data_dir: Path) -> None:
        self.database_url = database_url
        self.env = {"DMA_UPGRADE_DATA_DIR": str(data_dir), "COLUMNS": "250"}

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_cli(*args, database_url=self.database_url, env=self.env)

    def ok(self, *args: str) -> str:
        result = self(*args)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def refused(self, code: int, fragment: str, *args: str) -> None:
        """Exit ``code`` with one line on stderr naming ``fragment``, and nothing appended."""
        before = self.ok("audit", "export", "--format", "jsonl")
        result = self(*args)
        assert result.returncode == code, (result.stdout, result.stderr)
        assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
        assert fragment in result.stderr, result.stderr
        assert "Traceback" not in result.stderr + result.stdout
        assert self.ok("audit", "export", "--format", "jsonl").splitlines()[:-1] == before.splitlines()[:-1]


@pytest.fixture
def cli(db_url: str, tmp_path: Path) -> Cli:
    return Cli(db_url, tmp_path / "data")


def add(cli: Cli, name: str, number: int, version: str, cluster: str) -> None:
    cli.ok("agents", "add", name, "--address", f"10.0.0.{number}", "--version", version, "--cluster", cluster)


def test_a_garbage_version_is_exit_2_naming_the_forms(cli: Cli) -> None:
    cli.refused(2, "invalid DataMiner version 'garbage': expected A.B.C[.D], an optional CU and an optional -build",
                "agents", "add", "a1", "--address", "10.0.0.1", "--version", "garbage")


def test_mixed_versions_are_judged_on_parsed_versions_sorted_numerically(cli: Cli) -> None:
    add(cli, "n1", 1, "10.4.0.0-14112", "north")
    add(cli, "n2", 2, "10.4.0.0(CU0)-14112", "north")
    add(cli, "s1", 3, "10.10.0", "south")
    add(cli, "s2", 4, "10.9.0", "south")
    add(cli, "s3", 5, "10.0.0.0-9454 CU20", "south")
    listed = cli.ok("agents", "list")
    assert "cluster north" not in listed
    assert "warning: cluster south runs mixed versions: 10.0.0.0-9454 CU20, 10.9.0, 10.10.0" in listed


def test_setting_snmp_ports_clears_the_conflict_warning(cli: Cli, tmp_path: Path) -> None:
    add(cli, "n1", 1, "10.4.0.0-14112", "north")
    cli.ok("packages", "build", "--version", "10.4.9.0-14794", "--output", str(tmp_path / "built"))
    [package] = (tmp_path / "built").iterdir()
    cli.ok("packages", "upload", str(package))
    plan = ("upgrade", "start", "--package", package.name, "--agent", "n1", "--no-stop-snmp", "--dry-run")
    assert f"{CONFLICT} 161" in cli.ok(*plan)

    shown = cli.ok("agents", "set", "n1", "--snmp-port", "1161")

    assert "agent n1: SLSNMPAgent on UDP 1161, Windows SNMP on UDP 161" in shown
    assert CONFLICT not in cli.ok(*plan)
    assert "AgentPortsChanged" in cli.ok("audit", "export", "--format", "jsonl")
    cli.refused(2, "give --snmp-port, --windows-snmp-port or both", "agents", "set", "n1")
    cli.refused(2, "snmp-agent-port", "agents", "set", "n1", "--snmp-port", "70000")
    cli.refused(3, "unknown agent 'nobody'", "agents", "set", "nobody", "--snmp-port", "1161")


def test_the_path_advisor_and_the_path_check_of_a_rollout(cli: Cli, tmp_path: Path) -> None:
    add(cli, "w1", 1, "10.2.0.0(CU5)-12000", "west")
    for version in ("10.3.0.0(CU4)-13500", "10.4.9.0-14794"):
        cli.ok("packages", "build", "--version", version, "--output", str(tmp_path / "built"))
    for package in sorted((tmp_path / "built").iterdir()):
        cli.ok("packages", "upload", str(package))

    advice = cli.ok("upgrade", "path", "--cluster", "west", "--to", "10.4.9.0-14794")

    assert "from 10.2.0.0(CU5)-12000 (w1) to 10.4.9.0-14794: 2 hops" in advice
    hop, target = (line for line in advice.splitlines() if line.startswith(("│ 1", "│ 2")))
    assert "10.3.0 with its latest CU" in hop and "DataMiner 10.3.0.0(CU4)-13500 Full Upgrade.dmupgrade" in hop
    assert "10.4.9.0-14794" in target and "DataMiner 10.4.9.0-14794 Full Upgrade.dmupgrade" in target
    assert "from 10.0.0.0(CU19): no path" in cli.ok("upgrade", "path", "--from", "10.0.0 CU19", "--to", "10.1.0")
    assert ": direct" in cli.ok("upgrade", "path", "--agent", "w1", "--to", "10.3.0.0(CU4)-13500")
    cli.refused(2, "give exactly one of --from VERSION, --agent NAME or --cluster NAME",
                "upgrade", "path", "--to", "10.4.0")
    cli.refused(2, "invalid DataMiner version 'x'", "upgrade", "path", "--from", "x", "--to", "10.4.0")
    cli.refused(3, "unknown agent 'nobody'", "upgrade", "path", "--agent", "nobody", "--to", "10.4.0")

    start = ("upgrade", "start", "--package", "DataMiner 10.4.9.0-14794 Full Upgrade.dmupgrade",
             "--all-agents-in-cluster", "west")
    cli.refused(2, "agent w1: 10.2.0.0(CU5)-12000 cannot go to 10.4.9.0-14794 directly: install 10.3.0 with its "
                   "latest CU → 10.4.9.0-14794", *start)
    planned = cli.ok(*start, "--skip-path-check")
    assert "skip path check" in planned
    assert "(--skip-path-check)" in planned
