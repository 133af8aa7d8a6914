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
import re
import secrets
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

from dma_upgrade.adapters.errors import TokenFileUnreadable
from dma_upgrade.adapters.private_files import private_directory
from dma_upgrade.engine.actors import check_actor_name
from dma_upgrade.engine.errors import Conflict, InvalidInput, NotFound

_log = logging.getLogger("dma_upgrade.api")


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

    def refusal(self, needed: Role) -> str | None:
        """Why this caller may not do what needs the ``needed`` role; None when it may."""
        if self.role >= needed:
            return None
        return f"{self.name} is a {self.role.label}: this needs the {needed.label} role"


def token_digest(token: str) -> str:
    """The SHA-256 of ``token`` in hex: what the file keeps instead of the token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


_HEX_DIGEST = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class _Entry:
    """One token of the file: whom it stands for and the SHA-256 of the token."""

    principal: Principal
    sha256: str

    def as_json(self) -> dict[str, str]:
        return {"name": self.principal.name, "role": self.principal.role.label, "sha256": self.sha256}


def _entry(number: int, raw: object) -> _Entry:
    """The file's ``number``-th token, each field checked (``ValueError`` naming it)."""
    if not isinstance(raw, dict):
        raise ValueError(f"token {number} is not an object")
    fields = {key: raw.get(key) for key in ("name", "role", "sha256")}
    wrong = [key for key, value in fields.items() if not isinstance(value, str)]
    if wrong:
        raise ValueError(f"token {number} needs {' and '.join(wrong)} as text")
    name, role, digest = (str(value) for value in fields.values())
    if not _HEX_DIGEST.fullmatch(digest):
        raise ValueError(f"token {number} has a sha256 that is not 64 lowercase hexadecimal digits")
    try:
        return _Entry(Principal(check_actor_name(name, what="token name"), Role.parse(role)), digest)
    except InvalidInput as error:
        raise ValueError(f"token {number}: {error}") from None


class TokenFile:
    """The hashed tokens in one JSON file; read on each lookup so changes apply without a restart."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _entries(self) -> list[_Entry]:
        """Every token of the file (none when there is no file); ``TokenFileUnreadable`` naming the file and
        what is wrong with it when it cannot be read or is not a token file."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if not isinstance(data, dict) or not isinstance(data.get("tokens"), list):
                raise ValueError('it needs {"tokens": [...]}')
            return [_entry(number, raw) for number, raw in enumerate(data["tokens"], start=1)]
        except FileNotFoundError:
            return []
        except OSError as error:
            reason = error.strerror or type(error).__name__
        except RecursionError:
            reason = "it is nested too deep"
        except ValueError as error:  # JSON, UTF-8 and the checks above
            reason = str(error)
        raise TokenFileUnreadable(f"{self.path} is not a valid token file: {reason}")

    def principals(self) -> list[Principal]:
        """Every configured caller (without secrets)."""
        return [entry.principal for entry in self._entries()]

    def authenticate(self, token: str) -> Principal | None:
        """The caller ``token`` belongs to, or None; ``TokenFileUnreadable`` (no path, no detail: callers are
        strangers) when the file is broken, with the reason in the server's log."""
        digest = token_digest(token)
        try:
            entries = self._entries()
        except TokenFileUnreadable as error:
            _log.error("cannot authenticate API calls: %s", error)
            raise TokenFileUnreadable("the server cannot read its API tokens; its log says why") from None
        return next((e.principal for e in entries if hmac.compare_digest(e.sha256, digest)), None)

    def add(self, name: str, role: Role) -> str:
        """Create a token for ``name`` and return it: the only time it is ever shown."""
        check_actor_name(name, what="token name")
        with self._locked():
            entries = self._entries()
            if any(e.principal.name == name for e in entries):
                raise Conflict(f"a token named {name!r} exists already; revoke it first")
            token = secrets.token_urlsafe(32)
            self._write([*entries, _Entry(Principal(name, role), token_digest(token))])
        return token

    def revoke(self, name: str) -> None:
        """Remove the token named ``name``."""
        with self._locked():
            entries = self._entries()
            kept = [e for e in entries if e.principal.name != name]
            if len(kept) == len(entries):
                raise NotFound(f"no token named {name!r}")
            self._write(kept)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold an exclusive lock on the sibling ``.lock`` file, so changes made at once do not lose each other."""
        private_directory(self.path.parent)
        lock = os.open(self.path.with_name(f"{self.path.name}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield
        finally:
            os.close(lock)  # releases the lock

    def _write(self, entries: list[_Entry]) -> None:
        """Replace the file with ``entries`` at once (a temporary file renamed over it, removed on failure)."""
        handle, temp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as stream:
                json.dump({"tokens": [e.as_json() for e in entries]}, stream, indent=2)
            os.chmod(temp, 0o600)
            os.replace(temp, self.path)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
