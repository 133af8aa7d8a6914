"""How far behind the event store a read model was when it was read, given with what was read from it.

A query reads the read models as they are and never catches them up (that is the projections runner's job:
``serve``'s follower, ``dma-upgrade projections run``, or the one-shot catch-up of a local command). The
API sends the lag as two headers beside an unchanged body; the command line prints a note when it is behind.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from sqlalchemy.engine import Engine

from dma_upgrade.adapters.sql.read_models import checkpoint_position
from dma_upgrade.engine.ports import EventStore

T = TypeVar("T")

POSITION_HEADER = "X-Read-Model-Position"
"""The API's header naming the position of the last event the read model answering had applied."""
HEAD_HEADER = "X-Event-Store-Head"
"""The API's header naming the position of the last event in the store, read after the answer."""


class ReadSide(Protocol):
    """Where the read models are: their tables, and the store whose head they follow."""

    @property
    def engine(self) -> Engine: ...

    @property
    def store(self) -> EventStore: ...


@dataclass(frozen=True)
class Lag:
    """Where one projection stood when it was read: at ``position``, with the log at ``head``."""

    projection: str
    position: int
    head: int

    @property
    def events(self) -> int:
        """How many events of the log the answer does not show yet."""
        return max(self.head - self.position, 0)

    def note(self) -> str | None:
        """One line for people when the read model is behind; None when it is caught up."""
        if not self.events:
            return None
        return (f"note: the {self.projection} read model is {self.events} events behind the log (at position "
                f"{self.position} of {self.head}): what is shown may be out of date")

    def headers(self) -> dict[str, str]:
        """The lag as the API's response headers."""
        return {POSITION_HEADER: str(self.position), HEAD_HEADER: str(self.head)}

    @classmethod
    def of_headers(cls, projection: str, headers: Mapping[str, str]) -> Lag | None:
        """The lag an API answer's headers give; None when they give none (or not as numbers)."""
        position, head = headers.get(POSITION_HEADER), headers.get(HEAD_HEADER)
        if position is None or head is None or not position.isdigit() or not head.isdigit():
            return None
        return cls(projection, int(position), int(head))


@dataclass(frozen=True)
class Reading(Generic[T]):
    """What a query read, and how far behind its read model was (None: it did not say, e.g. an old server)."""

    value: T
    lag: Lag | None


def checkpoint(side: ReadSide, projection: str) -> int:
    """The position ``projection`` stands at: read before its rows, so a lag is never under-reported."""
    return checkpoint_position(side.engine, projection)


def lag_since(side: ReadSide, projection: str, position: int) -> Lag:
    """The lag of rows read at ``position`` (the checkpoint read before them), the head read now."""
    return Lag(projection, position, side.store.head_position())


def behind(lag: Lag) -> str:
    """A clause to end a "not found" with when the read model that did not find it is behind ("" when not)."""
    if not lag.events:
        return ""
    return f" (the {lag.projection} read model is {lag.events} events behind the log: it may not show it yet)"
