"""Real time and real ids for the ports the core reads them through, and times and durations as people read them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime


class SystemClock:
    """The wall clock, in UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class UuidFactory:
    """Random UUIDs (version 4)."""

    def new_id(self) -> uuid.UUID:
        return uuid.uuid4()


def utc_text(at: datetime) -> str:
    """A time as ISO 8601 in UTC to the second, e.g. ``2026-11-30T09:00:12Z`` (a naive time is taken as UTC)."""
    aware = at if at.tzinfo is not None else at.replace(tzinfo=UTC)
    return f"{aware.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}"


def seconds_text(seconds: float) -> str:
    """Seconds in a few digits: whole from 10 s, else to the tenth (``12``, ``2.5``, ``0``)."""
    return f"{seconds:.0f}" if seconds >= 10 else f"{seconds:.1f}".removesuffix(".0")
