"""API tokens: made once, stored hashed, checked by role."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from adapters.api.auth import Principal, Role, TokenFile
from engine.errors import Conflict, InvalidInput, NotFound


def test_a_new_token_authenticates_as_its_name_and_role(tmp_path: Path) -> None:
    tokens = TokenFile(tmp_path / "tokens.json")
    token = tokens.add("alice", Role.OPERATOR)
    assert tokens.authenticate(token) == Principal("alice", Role.OPERATOR)
    assert tokens.authenticate(token + "x") is None
    assert tokens.authenticate("") is None


def test_the_file_keeps_only_a_hash_readable_by_its_owner_alone(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    token = TokenFile(path).add("alice", Role.ADMIN)
    text = path.read_text()
    assert token not in text
    assert json.loads(text)["tokens"][0]["role"] == "admin"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_tokens_are_random_and_names_unique(tmp_path: Path) -> None:
    tokens = TokenFile(tmp_path / "tokens.json")
    first = tokens.add("alice", Role.VIEWER)
    second = tokens.add("bob", Role.VIEWER)
    assert first != second and len(first) >= 40
    with pytest.raises(Conflict):
        tokens.add("alice", Role.ADMIN)


def test_a_revoked_token_no_longer_authenticates(tmp_path: Path) -> None:
    tokens = TokenFile(tmp_path / "tokens.json")
    token = tokens.add("alice", Role.VIEWER)
    tokens.revoke("alice")
    assert tokens.authenticate(token) is None
    with pytest.raises(NotFound):
        tokens.revoke("alice")


def test_roles_are_ordered_and_parsed_by_name() -> None:
    assert Role.VIEWER < Role.OPERATOR < Role.ADMIN
    assert Role.parse(" Operator ") is Role.OPERATOR
    with pytest.raises(InvalidInput, match="unknown role 'root'"):
        Role.parse("root")


@pytest.mark.parametrize("content", ["not json", '{"tokens": [{"name": "x"}]}', '{"other": []}'])
def test_a_malformed_token_file_is_a_clear_error(tmp_path: Path, content: str) -> None:
    path = tmp_path / "tokens.json"
    path.write_text(content)
    with pytest.raises(InvalidInput, match="not a valid token file"):
        TokenFile(path).authenticate("anything")
