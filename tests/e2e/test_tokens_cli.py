"""``dma-upgrade tokens``: a token is printed once, listed by name and role, and revoked; a bad name or a broken
token file is one line and its exit code."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from dma_upgrade.adapters.access.tokens import Principal, Role, TokenFile
from tests.e2e.cli import run_cli


def test_tokens_add_list_and_revoke_through_the_cli(tmp_path: Path) -> None:
    env = {"DMA_UPGRADE_DATA_DIR": str(tmp_path)}
    added = run_cli("tokens", "add", "alice", "--role", "operator", env=env)
    assert added.returncode == 0, added.stderr
    token = added.stdout.strip()
    assert TokenFile(tmp_path / "api-tokens.json").authenticate(token) == Principal("alice", Role.OPERATOR)
    assert "not shown again" in added.stderr

    listed = run_cli("tokens", "list", env=env)
    assert "alice" in listed.stdout and "operator" in listed.stdout and token not in listed.stdout

    assert run_cli("tokens", "add", "alice", env=env).returncode == 4
    assert run_cli("tokens", "add", "bob", "--role", "root", env=env).returncode == 2
    assert run_cli("tokens", "revoke", "alice", env=env).returncode == 0
    assert TokenFile(tmp_path / "api-tokens.json").authenticate(token) is None
    assert run_cli("tokens", "revoke", "alice", env=env).returncode == 3


def one_line_error(result: subprocess.CompletedProcess[str], code: int, *mentions: str) -> None:
    """``result`` exited ``code`` with one error line on stderr naming each of ``mentions``, and no traceback."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert all(mention in lines[0] for mention in mentions), result.stderr


@pytest.mark.parametrize("name", ["nl-name\n", "x" * 101, "\x1b[31mred", " padded", ""])
def test_a_token_name_that_is_not_printable_or_too_long_is_refused_with_exit_2(tmp_path: Path, name: str) -> None:
    result = run_cli("tokens", "add", name, env={"DMA_UPGRADE_DATA_DIR": str(tmp_path)})

    one_line_error(result, 2, "token name")
    assert not (tmp_path / "api-tokens.json").exists()


def test_a_name_that_looks_like_markup_is_listed_as_it_is(tmp_path: Path) -> None:
    env = {"DMA_UPGRADE_DATA_DIR": str(tmp_path)}
    assert run_cli("tokens", "add", "[/]ops[bold]", env=env).returncode == 0

    listed = run_cli("tokens", "list", env=env)

    assert listed.returncode == 0, listed.stderr
    assert "[/]ops[bold]" in listed.stdout


BROKEN_FILES: dict[str, Callable[[Path], object]] = {
    "a directory": lambda path: path.mkdir(),
    "not json": lambda path: path.write_text("{not json"),
    "a non-string hash": lambda path: path.write_text(json.dumps(
        {"tokens": [{"name": "alice", "role": "viewer", "sha256": 12345}]})),
}


@pytest.mark.parametrize("breakage", BROKEN_FILES.values(), ids=BROKEN_FILES.keys())
def test_every_tokens_command_on_a_broken_token_file_is_one_line_and_exit_6(
        tmp_path: Path, breakage: Callable[[Path], object]) -> None:
    env = {"DMA_UPGRADE_DATA_DIR": str(tmp_path)}
    breakage(tmp_path / "api-tokens.json")

    for command in (["list"], ["add", "bob"], ["revoke", "alice"]):
        one_line_error(run_cli("tokens", *command, env=env), 6, "api-tokens.json is not a valid token file")


def test_a_token_file_whose_folder_cannot_be_made_is_one_line_and_exit_6(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    env = {"DMA_UPGRADE_API_TOKENS_FILE": str(tmp_path / "a-file" / "api-tokens.json")}

    one_line_error(run_cli("tokens", "list", env=env), 6, "a-file")
    one_line_error(run_cli("tokens", "add", "bob", env=env), 6, "cannot change")
