"""Who did something: the names of actors and API tokens, as they appear in the audit log and its exports."""

from __future__ import annotations

from dma_upgrade.engine.errors import InvalidInput, shown

MAX_ACTOR_LENGTH = 100
"""The longest actor or token name (characters)."""


def check_actor_name(name: str, *, what: str = "actor name") -> str:
    """Return ``name`` if it is 1 to ``MAX_ACTOR_LENGTH`` printable characters with no space at either end;
    otherwise raise ``InvalidInput`` naming ``what`` (control characters, newlines and escapes are refused,
    so a name can never forge a line of a log or an export)."""
    if not name or len(name) > MAX_ACTOR_LENGTH or not name.isprintable() or name != name.strip():
        raise InvalidInput(f"invalid {what} {shown(name)}: use 1 to {MAX_ACTOR_LENGTH} printable characters, "
                           f"with no space at either end")
    return name
