"""Real time and real ids for the ports the core reads them through."""

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
