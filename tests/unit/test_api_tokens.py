"""API tokens: made once, stored hashed, checked by role."""

from __future__ import annotations

import json
import stat
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from dma_upgrade.adapters.access.tokens import Principal, Role, TokenFile
from dma_upgrade.adapters.errors import TokenFileUnreadable
from dma_upgrade.engine.errors import Conflict, InvalidInput, NotFound


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
def test_a_malformed_token_file_is_a_clear_error_naming_the_file_only_to_its_owner(tmp_path: Path,
                                                                                   content: str) -> None:
    path = tmp_path / "tokens.json"
    path.write_text(content)
    with pytest.raises(TokenFileUnreadable, match=f"{path} is not a valid token file"):
        TokenFile(path).principals()
    with pytest.raises(TokenFileUnreadable) as refused:
        TokenFile(path).authenticate("anything")  # what an API caller is told: no path, no detail
    assert str(path) not in str(refused.value)


def test_tokens_added_at_the_same_time_are_all_kept(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    names = [f"bot-{n}" for n in range(40)]
    start = threading.Barrier(8)

    def add_all(offset: int) -> dict[str, str]:
        start.wait()
        return {name: TokenFile(path).add(name, Role.VIEWER) for name in names[offset::8]}

    with ThreadPoolExecutor(max_workers=8) as pool:
        made = {name: token for part in pool.map(add_all, range(8)) for name, token in part.items()}
    tokens = TokenFile(path)
    assert sorted(p.name for p in tokens.principals()) == sorted(names)
    assert all(tokens.authenticate(token) == Principal(name, Role.VIEWER) for name, token in made.items())


def test_a_write_that_fails_leaves_the_file_as_it_was_and_no_temporary_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "tokens.json"
    TokenFile(path).add("alice", Role.VIEWER)
    before = path.read_text()

    def failing_dump(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("dma_upgrade.adapters.access.tokens.json.dump", failing_dump)
    with pytest.raises(OSError, match="disk full"):
        TokenFile(path).add("bob", Role.VIEWER)
    assert path.read_text() == before
    assert sorted(f.name for f in tmp_path.iterdir()) == ["tokens.json", "tokens.json.lock"]
