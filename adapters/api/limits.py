"""Caps on the requests that hold the server for long: calls that wait on agents, and uploads.

A capped request that finds every slot taken is refused at once (503, ``ServerBusy``), never queued. Calls that
wait on agents also run on worker threads of their own, outside the 40 that anyio lends every sync route (and
each route's token check), so however many of them hang, the other routes keep their threads; ``/healthz``,
``/readyz`` and ``/metrics`` use none of the shared threads at all (see ``routes/health.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import anyio
import anyio.to_thread

from dma_upgrade.adapters.errors import ServerBusy

T = TypeVar("T")


class Admission:
    """At most ``size`` requests of one kind at once; another is refused while they run.

    Used from the event loop only, where a plain count cannot race."""

    def __init__(self, size: int, what: str, setting: str) -> None:
        self.size = size
        self._busy = f"the server is busy with {size} {what}, the most it takes at once ({setting}); try again shortly"
        self._taken = 0
        self._threads = anyio.CapacityLimiter(size)

    def refusal(self) -> str | None:
        """Why another request is refused now; None while a slot is free."""
        return self._busy if self._taken >= self.size else None

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold a slot for the ``with`` block; ``ServerBusy`` when none is free."""
        busy = self.refusal()
        if busy is not None:
            raise ServerBusy(busy)
        self._taken += 1
        try:
            yield
        finally:
            self._taken -= 1

    async def run(self, function: Callable[[], T]) -> T:
        """``function`` in a slot, on a worker thread of this kind's own (at most ``size``, never the shared ones)."""
        with self.slot():
            return await anyio.to_thread.run_sync(function, limiter=self._threads)
