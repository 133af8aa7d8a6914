"""The data directory and the embedded database are their owner's alone, whatever the umask."""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.cli import run_cli


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(autouse=True)
def permissive_umask() -> Iterator[None]:
    """The common umask 022, under which files are 0644 and directories 0755 unless the product says otherwise."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def test_a_fresh_data_directory_and_its_missing_parents_are_0700_and_the_database_0600(tmp_path: Path) -> None:
    data = tmp_path / "home" / "share" / "dma-upgrade"
    result = run_cli("audit", "verify", env={"DMA_UPGRADE_DATA_DIR": str(data)})
    assert result.returncode == 0, result.stderr
    assert [mode(path) for path in (tmp_path / "home", tmp_path / "home" / "share", data)] == [0o700] * 3
    assert mode(data / "dma-upgrade.db") == 0o600


def test_a_first_token_and_a_first_package_make_their_directories_0700_and_files_0600(tmp_path: Path) -> None:
    data = tmp_path / "fresh" / "dma-upgrade"
    env = {"DMA_UPGRADE_DATA_DIR": str(data)}
    assert run_cli("tokens", "add", "alice", "--role", "viewer", env=env).returncode == 0
    assert (mode(tmp_path / "fresh"), mode(data), mode(data / "api-tokens.json")) == (0o700, 0o700, 0o600)
    built = run_cli("packages", "build", "--version", "10.4.9.0-14794", "--output", str(tmp_path / "out"), env=env)
    assert built.returncode == 0, built.stderr
    package = next((tmp_path / "out").glob("*.dmupgrade"))
    uploaded = run_cli("packages", "upload", str(package), env=env)
    assert uploaded.returncode == 0, uploaded.stderr
    stored = next((data / "packages").glob("*.dmupgrade"))
    assert (mode(data / "packages"), mode(stored)) == (0o700, 0o600)


def test_an_older_open_data_directory_and_database_this_user_owns_are_tightened(tmp_path: Path) -> None:
    data = tmp_path / "dma-upgrade"
    data.mkdir(mode=0o755)
    sqlite3.connect(data / "dma-upgrade.db").close()
    (data / "dma-upgrade.db").chmod(0o644)
    result = run_cli("audit", "verify", env={"DMA_UPGRADE_DATA_DIR": str(data)})
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert (mode(data), mode(data / "dma-upgrade.db")) == (0o700, 0o600)


def test_a_shared_sticky_data_directory_is_left_open_with_a_warning_and_the_database_is_0600(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    result = run_cli("audit", "verify", env={"DMA_UPGRADE_DATA_DIR": str(shared)})
    assert result.returncode == 0, result.stderr
    assert result.stderr.startswith(f"warning: the data directory {shared} is open to other users (mode 1777)")
    assert result.stderr.count("\n") == 1
    assert (mode(shared), mode(shared / "dma-upgrade.db")) == (0o1777, 0o600)


def test_a_data_directory_that_is_a_file_is_one_line_exit_6(tmp_path: Path) -> None:
    data = tmp_path / "dma-upgrade"
    data.write_text("not a directory\n")
    result = run_cli("audit", "verify", env={"DMA_UPGRADE_DATA_DIR": str(data)})
    assert result.returncode == 6, result.stderr
    assert result.stderr == f"error: cannot use the data directory {data}: it is not a directory\n"
    assert mode(data) == 0o644
