"""Group commit: the appends of many threads of one process written together, one transaction per group.

Appends are serialised (global order equals commit order), so each costs the whole of a commit, the
wait for the disk included, while holding the append lock. Grouped, the appends queued while one
group is written share the next lock, head read, insert and commit. The first thread to append while
no group is being written leads: it takes every append queued so far and writes them as one group;
threads arriving meanwhile queue, and the first of them leads the next group once this one is written.
Each append still succeeds or fails on its own (the writer checks its expected version against the
store and the appends before it in the group), in the order the appends arrived.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from dma_upgrade.engine.event_log import PreparedEvent
from dma_upgrade.engine.events import NewEvent
from dma_upgrade.engine.ports import AppendResult


@dataclass(eq=False)
class PendingAppend:
    """One append waiting for its group to be written; the writer sets its ``result`` or ``error``."""

    stream_id: str
    expected_version: int
    events: Sequence[NewEvent]
    prepared: Sequence[PreparedEvent]
    """The events encoded and their hash chain's canonical text prepared, by the appending thread before it
    queues (not under the lock)."""
    result: AppendResult | None = None
    error: BaseException | None = None
    leads: bool = False
    ready: threading.Event = field(default_factory=threading.Event)

    def outcome(self) -> AppendResult:
        """The append's result, or its error raised."""
        if self.error is not None:
            raise self.error
        assert self.result is not None, "the group was written without deciding this append"
        return self.result


class GroupCommit:
    """Queues appends and has one thread at a time write all those queued as a group (``write``)."""

    def __init__(self, write: Callable[[list[PendingAppend]], None]) -> None:
        """``write`` writes a group in one transaction and sets each member's result or error."""
        self._write = write
        self._lock = threading.Lock()
        self._queue: list[PendingAppend] = []
        self._writing = False

    def append(self, pending: PendingAppend) -> AppendResult:
        """Queue ``pending``, wait for its group to be written (leading it if no group is being written)."""
        with self._lock:
            self._queue.append(pending)
            lead = not self._writing
            self._writing = True
        if not lead:
            pending.ready.wait()
            lead = pending.leads
        if lead:
            self._lead()
        return pending.outcome()

    def _lead(self) -> None:
        with self._lock:
            group, self._queue = self._queue, []
        try:
            self._write(group)
        except BaseException as error:  # the followers must hear of it rather than wait forever
            for member in group:
                if member.result is None and member.error is None:
                    member.error = error
        finally:
            with self._lock:
                if self._queue:
                    following = self._queue[0]
                    following.leads = True
                    following.ready.set()
                else:
                    self._writing = False
            for member in group:
                member.ready.set()
