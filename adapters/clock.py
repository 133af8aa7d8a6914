"""Real time and real ids for the ports the core reads them through, and times and durations as people read them."""

from __future__ import annotations

import os
import time
import uuid
from datetime import UTC, datetime


class SystemClock:
    """The wall clock, in UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)


_UUID7_VERSION_AND_VARIANT = 0x7 << 76 | 0b10 << 62
_UUID7_RANDOM = (0xFFF << 64) | ((1 << 62) - 1)
"""The 74 random bits of a version 7 UUID: ``rand_a`` (12) and ``rand_b`` (62)."""


def uuid7(now_ns: int | None = None) -> uuid.UUID:
    """A version 7 UUID (RFC 9562, section 5.7): the Unix time in milliseconds in its first 48 bits, then 74
    random bits (``os.urandom``, as ``uuid.uuid4``). Ids made later sort later (to the millisecond); those of one
    millisecond differ in their random bits only."""
    millis = (time.time_ns() if now_ns is None else now_ns) // 1_000_000
    random_bits = int.from_bytes(os.urandom(10)) & _UUID7_RANDOM
    return uuid.UUID(int=(millis & 0xFFFF_FFFF_FFFF) << 80 | _UUID7_VERSION_AND_VARIANT | random_bits)


class UuidFactory:
    """Time-ordered UUIDs (version 7). Event, upgrade and rollout ids are keys of the store's indexes: an event id
    made later lands at the right end of the ``event_id`` index, as a position does, where a random one (version 4)
    touched a page of its own per event (``docs/operations.md``, "Sizing", has the figures). The id tells when it
    was made, to the millisecond, which the event's ``recorded_at`` tells anyway."""

    def new_id(self) -> uuid.UUID:
        return uuid7()


def short_id(id_text: str) -> str:
    """An id as a person reads it in a list: its last 8 hex digits, which are random (the first digits of a
    version 7 id are its time, the same for ids made within a minute of each other)."""
    return id_text[-8:]


def utc_text(at: datetime) -> str:
    """A time as ISO 8601 in UTC to the second, e.g. ``2026-11-30T09:00:12Z`` (a naive time is taken as UTC)."""
    aware = at if at.tzinfo is not None else at.replace(tzinfo=UTC)
    return f"{aware.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}"


def seconds_text(seconds: float) -> str:
    """Seconds in a few digits: whole from 10 s, else to the tenth (``12``, ``2.5``, ``0``)."""
    return f"{seconds:.0f}" if seconds >= 10 else f"{seconds:.1f}".removesuffix(".0")
