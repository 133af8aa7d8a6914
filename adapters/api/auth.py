"""Who may call the API: bearer tokens with roles, kept hashed in a JSON file.

The file (``DMA_UPGRADE_API_TOKENS_FILE``, default ``<data dir>/api-tokens.json``) holds
``{"tokens": [{"name": ..., "role": "viewer|operator|admin", "sha256": ...}]}``: the SHA-256 of each
token, never the token. Tokens are 256-bit random strings, so a plain SHA-256 is enough to make the
file useless to a thief (there is nothing to brute-force). The token's name is the actor recorded on
every event its calls append.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import logging
import os
import secrets
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

from engine.errors import Conflict, InvalidInput, NotFound, StoreUnavailable

_log = logging.getLogger("dma_upgrade.api")


class TokenFileUnreadable(StoreUnavailable):
    """The token file exists but cannot be used: no call can be authenticated until it is mended."""


class Role(IntEnum):
    """What a token may do; each role may do everything the roles below it may."""

    VIEWER = 1
    OPERATOR = 2
    ADMIN = 3

    @classmethod
    def parse(cls, text: str) -> Role:
        """The role named ``text`` (any case, spaces around ignored); ``InvalidInput`` for another name."""
        try:
            return cls[text.strip().upper()]
        except KeyError:
            raise InvalidInput(f"unknown role {text!r}; roles: viewer, operator, admin") from None

    @property
    def label(self) -> str:
        """The role's name as users write it: viewer, operator or admin."""
        return self.name.lower()


@dataclass(frozen=True)
class Principal:
    """The caller a token stands for."""

    name: str
    role: Role


def token_digest(token: str) -> str:
    """The SHA-256 of ``token`` in hex: what the file keeps instead of the token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class TokenFile:
    """The hashed tokens in one JSON file; read on each lookup so changes apply without a restart."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _entries(self) -> list[dict[str, str]]:
        if not self.path.exists():
            return []
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            entries = data["tokens"]
            if not all({"name", "role", "sha256"} <= set(e) for e in entries):
                raise ValueError("every token needs a name, a role and a sha256")
        except (ValueError, KeyError, TypeError) as error:
            raise InvalidInput(f"{self.path} is not a valid token file: {error}") from None
        return list(entries)

    def principals(self) -> list[Principal]:
        """Every configured caller (without secrets)."""
        return [Principal(e["name"], Role.parse(e["role"])) for e in self._entries()]

    def authenticate(self, token: str) -> Principal | None:
        """The caller ``token`` belongs to, or None; ``TokenFileUnreadable`` (no path, no detail: callers are
        strangers) when the file is broken, with the reason in the server's log."""
        digest = token_digest(token)
        try:
            entries = self._entries()
            for entry in entries:
                if hmac.compare_digest(entry["sha256"], digest):
                    return Principal(entry["name"], Role.parse(entry["role"]))
        except InvalidInput as error:
            _log.error("cannot authenticate API calls: %s", error)
            raise TokenFileUnreadable("the server cannot read its API tokens; its log says why") from None
        return None

    def add(self, name: str, role: Role) -> str:
        """Create a token for ``name`` and return it: the only time it is ever shown."""
        if not name.strip() or len(name) > 100 or not name.isprintable():
            raise InvalidInput("a token needs a name of 1 to 100 printable characters")
        with self._locked():
            entries = self._entries()
            if any(e["name"] == name for e in entries):
                raise Conflict(f"a token named {name!r} exists already; revoke it first")
            token = secrets.token_urlsafe(32)
            self._write([*entries, {"name": name, "role": role.label, "sha256": token_digest(token)}])
        return token

    def revoke(self, name: str) -> None:
        """Remove the token named ``name``."""
        with self._locked():
            entries = self._entries()
            kept = [e for e in entries if e["name"] != name]
            if len(kept) == len(entries):
                raise NotFound(f"no token named {name!r}")
            self._write(kept)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold an exclusive lock on the sibling ``.lock`` file, so changes made at once do not lose each other."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = os.open(self.path.with_name(f"{self.path.name}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield
        finally:
            os.close(lock)  # releases the lock

    def _write(self, entries: list[dict[str, str]]) -> None:
        """Replace the file with ``entries`` at once (a temporary file renamed over it, removed on failure)."""
        handle, temp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as stream:
                json.dump({"tokens": entries}, stream, indent=2)
            os.chmod(temp, 0o600)
            os.replace(temp, self.path)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
