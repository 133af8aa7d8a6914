"""Several engine processes on one database: rollouts and agent upgrades driven under leases.

A rollout is run by the process holding its lease (``EngineProcess``); the upgrades its runner starts
are handed out as rows of the leases table (``LeasedWorkQueue``), and every process claims them up to
its capacity and drives each in a thread (``UpgradeDrivers``). ``Heartbeat`` renews a process's leases;
a process that dies or hangs loses them when they expire, and the others take its work over from the
event store, where a stale holder's late appends fail on the stream version they expected.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar
from uuid import UUID

import sqlalchemy as sa

from dma_upgrade.adapters.runtime.ports import Stopping
from dma_upgrade.adapters.runtime.rollout_runner import RolloutRunner
from dma_upgrade.adapters.sql.database import first_line
from dma_upgrade.adapters.sql.leases import UPGRADE, HeldLease, SqlLeases
from dma_upgrade.adapters.sql.wakeups import Wakeup
from dma_upgrade.engine.agent_upgrade import AgentUpgrade
from dma_upgrade.engine.errors import LeaseLost, StoreUnavailable

_log = logging.getLogger("dma_upgrade.engine")

CLAIM_BATCH = 16
"""Upgrades claimed per statement: processes claiming at once share the handed-out upgrades out."""
OUTAGES = (StoreUnavailable, sa.exc.DBAPIError)
"""Errors that mean the database could not be reached (the work is left for a later look)."""


T = TypeVar("T")


def run_leased(leases: SqlLeases, lease: HeldLease, work: Callable[[], T], what: str,
               on_error: Callable[[BaseException], None]) -> T | None:
    """Do the work ``lease`` stands for: when it returns, the lease is released as done and its result given;
    otherwise the lease is given back (a takeover or an outage logged, anything else reported) and None."""
    try:
        result = work()
        leases.release(lease, done=True)
        return result
    except (LeaseLost, Stopping, *OUTAGES) as error:
        reason = f" ({first_line(error)})" if isinstance(error, OUTAGES) else ""
        if isinstance(error, LeaseLost) or lease.expired:  # paused or hung past its lease: the work may be another's
            _log.warning("%s was taken over by another engine process; this one stops%s", what, reason)
        elif isinstance(error, Stopping):
            _log.info("%s: this engine process stops; the work is given back", what)
        else:
            _log.warning("%s paused: the database cannot be reached%s", what, reason)
    except BaseException as error:  # a bug: reported, and the work is left for a later claim
        on_error(error)
    give_back(leases, lease)
    return None


def playing(leases: SqlLeases, role: str) -> Callable[[], bool]:
    """Whether this process plays ``role`` now (claiming it if no live process does); not in an outage."""

    def plays() -> bool:
        try:
            return leases.plays(role)
        except OUTAGES:
            return False

    return plays


class LeasedWorkQueue:
    """The engine's work queue in the leases table: a handed-out upgrade is a row any process may claim."""

    def __init__(self, leases: SqlLeases, *, settle_seconds: float = 1.0,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._leases = leases
        self._settle_seconds = settle_seconds
        self._monotonic = monotonic
        self._settled_at: float | None = None
        self._waiting: dict[UUID, tuple[UUID, Future[AgentUpgrade | None]]] = {}
        self._as_handed_out: dict[UUID, AgentUpgrade] = {}
        self._lock = threading.Lock()

    def hand_out(self, rollout_id: UUID,
                 upgrades: Mapping[UUID, AgentUpgrade]) -> dict[UUID, Future[AgentUpgrade | None]]:
        self._leases.offer(rollout_id, list(upgrades))
        with self._lock:
            self._as_handed_out.update(upgrades)
        return {upgrade_id: self._future(rollout_id, upgrade_id) for upgrade_id in upgrades}

    def as_handed_out(self, upgrade_id: UUID) -> AgentUpgrade | None:
        """The upgrade as a runner of this process handed it out (once), for the driver that claimed it here."""
        with self._lock:
            return self._as_handed_out.pop(upgrade_id, None)

    def handed_out(self, rollout_id: UUID) -> dict[UUID, Future[AgentUpgrade | None]]:
        return {upgrade_id: self._future(rollout_id, upgrade_id)
                for upgrade_id in self._leases.upgrades_handed_out([rollout_id])}

    def _future(self, rollout_id: UUID, upgrade_id: UUID) -> Future[AgentUpgrade | None]:
        with self._lock:
            waiting = self._waiting.get(upgrade_id)
            if waiting is None:
                waiting = self._waiting[upgrade_id] = (rollout_id, Future())
            return waiting[1]

    def ended(self, upgrade_id: UUID, upgrade: AgentUpgrade) -> None:
        """An upgrade driven in this process ended (its row is marked ended): tell its runner, if it is here."""
        with self._lock:
            waiting = self._waiting.pop(upgrade_id, None)
        if waiting is not None:
            waiting[1].set_result(upgrade)

    def settle(self) -> None:
        """Resolve the futures of upgrades that other processes ended (one statement for all rollouts, which
        also clears the rows of those ended here, whose futures were resolved at once), at most once per
        ``settle_seconds``."""
        now = self._monotonic()
        if self._settled_at is not None and now - self._settled_at < self._settle_seconds:
            return
        self._settled_at = now
        with self._lock:
            rollouts = {rollout_id for rollout_id, _ in self._waiting.values()}
        if not rollouts:
            return
        ended = self._leases.take_ended(rollouts)
        with self._lock:
            futures = [self._waiting.pop(upgrade_id)[1] for upgrade_id in ended if upgrade_id in self._waiting]
            for upgrade_id in ended:  # ended by another process: this process's copy is of no more use
                self._as_handed_out.pop(upgrade_id, None)
        for future in futures:
            if not future.done():
                future.set_result(None)


class UpgradeDrivers:
    """Claims handed-out upgrades, up to ``capacity`` at once, and drives each in a thread of its own."""

    def __init__(self, runner: RolloutRunner, leases: SqlLeases, queue: LeasedWorkQueue, *, capacity: int,
                 wakeup: Wakeup, on_error: Callable[[BaseException], None]) -> None:
        if capacity < 1:
            raise ValueError("an engine must be able to drive at least one upgrade")
        self._runner = runner
        self._leases = leases
        self._queue = queue
        self._capacity = capacity
        self._wakeup = wakeup
        self._on_error = on_error
        self._driving: set[str] = set()
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=capacity, thread_name_prefix="upgrade")

    def serve(self, stop: threading.Event, poll_seconds: float) -> None:
        """Until ``stop``: settle ended upgrades and claim free ones, at every wake-up or poll."""
        try:
            while not stop.is_set():
                try:
                    if len(self.tick()) == CLAIM_BATCH:
                        continue  # there may be more: claim again at once
                except OUTAGES as error:
                    _log.warning("cannot claim upgrades (%s); looking again in %.1f s", first_line(error), poll_seconds)
                self._wakeup.wait(poll_seconds)
        finally:
            self._pool.shutdown(wait=False, cancel_futures=True)

    def tick(self) -> list[HeldLease]:
        """One look: resolve what ended elsewhere, claim as many upgrades as there is room for; return them."""
        self._queue.settle()
        with self._lock:
            room = self._capacity - len(self._driving)
        if room <= 0:
            return []
        claimed = self._leases.claim(UPGRADE, limit=min(room, CLAIM_BATCH))
        with self._lock:
            self._driving.update(lease.name for lease in claimed)
        for lease in claimed:
            self._pool.submit(self._drive, lease)
        return claimed

    def driving(self) -> int:
        """How many upgrades this process drives now."""
        with self._lock:
            return len(self._driving)

    def _drive(self, lease: HeldLease) -> None:
        upgrade_id = UUID(lease.key)
        assert lease.rollout_id is not None
        rollout_id = UUID(lease.rollout_id)
        try:
            upgrade = run_leased(self._leases, lease, lambda: self._runner.drive_handed_out(
                rollout_id, upgrade_id, lease, self._queue.as_handed_out(upgrade_id)), f"upgrade {upgrade_id}",
                self._on_error)
            if upgrade is not None:
                self._queue.ended(upgrade_id, upgrade)
        finally:
            with self._lock:
                self._driving.discard(lease.name)
            self._wakeup.wake()


def give_back(leases: SqlLeases, lease: HeldLease) -> None:
    """Leave work this process stopped driving to whoever claims it next; in an outage it lapses instead."""
    with contextlib.suppress(*OUTAGES):
        leases.release(lease, done=False)


class Heartbeat:
    """Renews this process's leases every ``interval`` seconds, in a thread of its own (and its presence)."""

    def __init__(self, leases: SqlLeases, interval: float) -> None:
        self._leases = leases
        self._interval = interval

    def serve(self, stop: threading.Event) -> None:
        while not stop.wait(self._interval):
            self.beat()

    def beat(self) -> None:
        """Renew every lease now; log those found lost and an outage (the leases then lapse)."""
        try:
            for lease in self._leases.renew():
                _log.warning("lost the lease on %s: another engine process took it over", lease.name)
            self._leases.announce()
        except OUTAGES as error:
            _log.warning("cannot renew leases (%s): they lapse unless the database is back in time", first_line(error))
