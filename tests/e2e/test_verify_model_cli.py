"""``dma-upgrade verify-model`` as a person runs it: a verdict per configuration, exit 1 with a trace on a
violation."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.cli import run_cli

NO_BUDGETS = ("--faults", "0", "--crashes", "0", "--operator", "0")


def test_verify_model_checks_every_configuration_and_exits_0(tmp_path: Path) -> None:
    result = run_cli("verify-model", *NO_BUDGETS, database_url=f"sqlite:///{tmp_path / 'unused.db'}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("holds") == 16, result.stdout
    assert "VIOLATED" not in result.stdout
    for policy in ("default", "simultaneous", "backup-first", "backup-first-switch-back"):
        assert policy in result.stdout


def test_verify_model_on_a_seeded_fault_exits_1_with_the_shortest_trace(tmp_path: Path) -> None:
    result = run_cli("verify-model", *NO_BUDGETS, "--seed-fault", "reboot-after-switch",
                     database_url=f"sqlite:///{tmp_path / 'unused.db'}")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "VIOLATED" in result.stdout
    assert "invariant 1 a switch-over moves activity only to an agent that runs the new version" in result.stdout
    assert "switch_over sent" in result.stdout.splitlines()[-1]


def test_verify_model_refuses_an_unknown_seeded_fault(tmp_path: Path) -> None:
    result = run_cli("verify-model", "--seed-fault", "nonsense", database_url=f"sqlite:///{tmp_path / 'x.db'}")
    assert result.returncode == 2
    assert "unknown seeded fault" in result.stdout + result.stderr
