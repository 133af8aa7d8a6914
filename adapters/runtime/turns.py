"""Turns at the engine's own work, shared by every rollout an engine drives, handed out by priority.

Each upgrade is driven in a thread of its own, because agent calls block for as long as a step takes.
The work between those calls (reading the store, deciding, appending) is done only by a thread holding a
turn. There are a few turns; waiting places are served by rank, then in the order they were taken. The
first command of every upgrade an engine takes up (rank ``FIRST``, its place taken when the upgrade is
handed to a thread) thus goes out before any upgrade's later steps (rank ``NEXT``), however many
upgrades a restarted engine resumes at once. A thread gives its turn back while it calls an agent or
waits out a timer.
"""

from __future__ import annotations

import heapq
import itertools
import threading
from collections.abc import Iterator
from contextlib import contextmanager

FIRST = 0
"""Rank of an upgrade's work up to this engine's first command to its agent."""
NEXT = 1
"""Rank of everything after it."""


class Place:
    """A place in line for a turn; called once a turn is free for it."""

    def __init__(self) -> None:
        self._called = threading.Event()

    def call(self) -> None:
        """Tell the holder of this place that its turn is free."""
        self._called.set()

    def wait(self) -> None:
        """Block until this place is called."""
        self._called.wait()


class Turns:
    """A few turns at the engine's work; waiting places are served by rank, then in the order taken."""

    def __init__(self, count: int = 4) -> None:
        if count < 1:
            raise ValueError("an engine needs at least one turn")
        self._free = count
        self._lock = threading.Lock()
        self._line: list[tuple[int, int, Place]] = []
        self._numbers = itertools.count()

    def line_up(self, rank: int) -> Place:
        """Take a place in line now, for a thread that may start later; it must then ``hold`` it."""
        place = Place()
        with self._lock:
            if self._free and not self._line:
                self._free -= 1
                place.call()
            else:
                heapq.heappush(self._line, (rank, next(self._numbers), place))
        return place

    @contextmanager
    def hold(self, place: Place) -> Iterator[None]:
        """Hold a turn for the block, once ``place`` is called."""
        place.wait()
        try:
            yield
        finally:
            self._give_back()

    @contextmanager
    def released(self) -> Iterator[None]:
        """Within ``hold``: give the turn back for the block (an agent call, a wait), then wait at rank NEXT."""
        self._give_back()
        try:
            yield
        finally:
            self.line_up(NEXT).wait()

    def _give_back(self) -> None:
        with self._lock:
            if self._line:
                heapq.heappop(self._line)[2].call()
            else:
                self._free += 1
