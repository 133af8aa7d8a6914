"""What the aggregates share: the state of one is a fold of its stream's events."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Self

from dma_upgrade.engine.events import Event


class Aggregate(ABC):
    """An aggregate rebuilt from its events: ``apply`` takes one event, ``fold`` a whole stream."""

    @abstractmethod
    def apply(self, event: Event) -> None:
        """Apply one event of this aggregate's stream."""

    @classmethod
    def fold(cls, events: Iterable[Event]) -> Self:
        """Rebuild the aggregate from its events in stream order."""
        aggregate = cls()
        for event in events:
            aggregate.apply(event)
        return aggregate
