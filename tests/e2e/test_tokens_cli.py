"""``dma-upgrade tokens``: a token is printed once, listed by name and role, and revoked."""

from __future__ import annotations

from pathlib import Path

from adapters.api.auth import Principal, Role, TokenFile
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
