"""The layers point one way: the import-linter contracts in pyproject.toml hold.

Run in a process of its own: import-linter configures logging with ``dictConfig``, which disables every logger
already made, so the engine's log records would no longer reach the tests that run after it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINT = ("import sys; from importlinter.cli import lint_imports; "
        "sys.exit(lint_imports(config_filename=sys.argv[1], no_cache=True, no_logo=True))")


def test_the_import_contracts_are_kept() -> None:
    linted = subprocess.run([sys.executable, "-c", LINT, str(ROOT / "pyproject.toml")], cwd=ROOT,
                            capture_output=True, text=True, timeout=300, check=False)

    assert linted.returncode == 0, linted.stdout + linted.stderr
    assert "KEPT" in linted.stdout and "BROKEN" not in linted.stdout
