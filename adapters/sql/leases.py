"""``SqlLeases``: which engine process drives which rollout, agent upgrade or role, in the ``leases`` table.

A lease is a row: its name, kind, holder, expiry, and a token that grows at every claim. A claim takes
free rows (no holder, or expired) with ``SELECT ... FOR UPDATE SKIP LOCKED`` on PostgreSQL, so processes
claiming at once neither wait on each other nor take the same row; on SQLite the single writer's
``BEGIN IMMEDIATE`` does the same. A holder renews all its leases in one statement per heartbeat. A
lease is lost when its renewal finds the row taken or gone, or when the holder's own deadline passes
(``check`` needs no I/O): that deadline falls a margin before the expiry other processes see, so a
holder stops acting before anyone may take over. Expiry times come from the clock port: the clocks of
the engines' hosts must agree to well within the margin (NTP does).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine

from dma_upgrade.adapters.sql.database import WRITE, is_sqlite
from dma_upgrade.adapters.sql.schema import leases
from dma_upgrade.adapters.sql.wakeups import notify
from dma_upgrade.engine.errors import LeaseLost
from dma_upgrade.engine.ports import Clock

ROLLOUT = "rollout"
"""A rollout's lease: its holder runs the rollout (starts it, hands out its upgrades, ends it)."""
UPGRADE = "upgrade"
"""A handed-out agent upgrade: its holder drives it; when it ends, the row becomes ``ENDED``."""
ENDED = "ended"
"""An upgrade whose driver ended it: the row tells the rollout's runner, which then deletes it."""
ENGINE = "engine"
"""A process's own presence: held while it runs, so an idle engine is listed too."""
ROLE = "role"
"""A role one process at a time plays for all (following the projections, exporting the fleet gauges)."""

MARGIN = 0.2
"""The share of the lease time a holder gives up at the end: it stops acting that long before expiry."""


def owner_identity() -> str:
    """A new holder name for this process: ``host/pid/random`` (the random part tells restarts apart)."""
    return f"{socket.gethostname()}/{os.getpid()}/{secrets.token_hex(4)}"


def lease_name(kind: str, key: UUID | str) -> str:
    """The row name of a lease of ``kind`` on ``key``."""
    return f"{kind}:{key}"


class HeldLease:
    """A lease this process holds (the engine's ``Lease`` port)."""

    def __init__(self, name: str, kind: str, rollout_id: str | None, token: int, deadline: float,
                 monotonic: Callable[[], float]) -> None:
        self.name = name
        self.kind = kind
        self.rollout_id = rollout_id
        self.token = token
        self._deadline = deadline
        self._monotonic = monotonic
        self._lost = False

    @property
    def key(self) -> str:
        """What the lease is on: the rollout or upgrade id, or the role's name."""
        return self.name.split(":", 1)[1]

    @property
    def lost(self) -> bool:
        return self._lost or self.expired

    @property
    def expired(self) -> bool:
        """Whether its time ran out before it was renewed (another process may have taken the work over)."""
        return self._monotonic() >= self._deadline

    def check(self) -> None:
        if self.lost:
            self._lost = True
            raise LeaseLost(self.name)

    def _extend(self, deadline: float) -> None:
        self._deadline = max(self._deadline, deadline)

    def _lose(self) -> None:
        self._lost = True


@dataclass(frozen=True)
class _Claim:
    name: str
    rollout_id: str | None = None


class SqlLeases:
    """The leases of one engine process (``owner``), each claimed for ``seconds`` and renewed by ``renew``."""

    def __init__(self, engine: Engine, clock: Clock, *, owner: str | None = None, seconds: float = 15.0,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        if seconds <= 0:
            raise ValueError("a lease must last some time")
        self.engine = engine
        self.owner = owner or owner_identity()
        self.seconds = seconds
        self._clock = clock
        self._monotonic = monotonic
        self._sqlite = is_sqlite(engine)
        self._held: dict[str, HeldLease] = {}
        self._lock = threading.Lock()
        self.claimed: Counter[str] = Counter()
        """Leases claimed by this process since it started, by kind (a takeover counts too)."""
        self.lost: Counter[str] = Counter()
        """Leases this process found taken over or gone at a renewal, by kind."""

    # -- claiming ------------------------------------------------------------------------------

    def claim(self, kind: str, keys: Iterable[UUID | str] | None = None, *,
              limit: int | None = None) -> list[HeldLease]:
        """Claim free leases of ``kind``: those on ``keys`` (their rows created if missing), or any row of
        the kind (handed-out upgrades), at most ``limit``. Rows held by others and unexpired are skipped."""
        wanted = None if keys is None else [_Claim(lease_name(kind, key)) for key in keys]
        if wanted == []:
            return []
        with self._write() as conn:
            if wanted is not None:
                self._insert_missing(conn, kind, wanted)
            return self._claim_free(conn, kind, None if wanted is None else [c.name for c in wanted], limit)

    def offer(self, rollout_id: UUID, upgrade_ids: Sequence[UUID]) -> None:
        """Hand out upgrades of a rollout: free rows any process may claim (existing rows stay as they are)."""
        if not upgrade_ids:
            return
        with self._write() as conn:
            self._insert_missing(conn, UPGRADE, [_Claim(lease_name(UPGRADE, u), str(rollout_id)) for u in upgrade_ids])
            if not self._sqlite:
                notify(conn)

    def _insert_missing(self, conn: sa.Connection, kind: str, wanted: list[_Claim]) -> None:
        rows = [{"name": c.name, "kind": kind, "rollout_id": c.rollout_id, "token": 0} for c in wanted]
        insert = sqlite_insert if self._sqlite else pg_insert
        conn.execute(insert(leases).on_conflict_do_nothing(index_elements=["name"]), rows)

    def _claim_free(self, conn: sa.Connection, kind: str, names: list[str] | None,
                    limit: int | None) -> list[HeldLease]:
        now, expires_at, deadline = self._term()
        pick = sa.select(leases.c.name).where(
            leases.c.kind == kind, sa.or_(leases.c.owner.is_(None), leases.c.expires_at < now))
        if names is not None:
            pick = pick.where(leases.c.name.in_(names))
        if limit is not None:
            pick = pick.limit(limit)
        claimed = conn.execute(
            sa.update(leases).where(leases.c.name.in_(pick.with_for_update(skip_locked=True).scalar_subquery()))
            .values(owner=self.owner, expires_at=expires_at, token=leases.c.token + 1)
            .returning(leases.c.name, leases.c.rollout_id, leases.c.token)).all()
        held = [HeldLease(row.name, kind, row.rollout_id, row.token, deadline, self._monotonic) for row in claimed]
        with self._lock:
            self.claimed[kind] += len(held)
            for lease in held:
                previous = self._held.get(lease.name)
                if previous is not None:
                    previous._lose()
                self._held[lease.name] = lease
        return held

    def _term(self) -> tuple[datetime, datetime, float]:
        """For a claim or renewal made now: the time now, the expiry others will see, and this process's
        own deadline (monotonic), which falls ``MARGIN`` of the lease time before that expiry."""
        deadline = self._monotonic() + self.seconds * (1 - MARGIN)
        now = self._clock.now()
        return now, now + timedelta(seconds=self.seconds), deadline

    # -- holding -------------------------------------------------------------------------------

    def renew(self) -> list[HeldLease]:
        """Extend every lease held (the heartbeat); return those found lost (taken over, or gone)."""
        with self._lock:
            held = dict(self._held)
        if not held:
            return []
        _, expires_at, deadline = self._term()
        with self._write() as conn:
            renewed = {(row.name, row.token) for row in conn.execute(
                sa.update(leases).where(leases.c.owner == self.owner, leases.c.name.in_(list(held)))
                .values(expires_at=expires_at).returning(leases.c.name, leases.c.token))}
        lost = []
        with self._lock:
            for name, lease in held.items():
                if (name, lease.token) in renewed:
                    lease._extend(deadline)
                elif self._held.get(name) is lease:
                    lease._lose()
                    del self._held[name]
                    self.lost[lease.kind] += 1
                    lost.append(lease)
        return lost

    def release(self, lease: HeldLease, *, done: bool) -> None:
        """Give a lease up: ``done`` ends its work (an upgrade's row is marked ended for its rollout's
        runner, any other row deleted), otherwise the row is left free for another claim."""
        with self._lock:
            if self._held.get(lease.name) is lease:
                del self._held[lease.name]
        lease._lose()
        mine = (leases.c.name == lease.name, leases.c.owner == self.owner, leases.c.token == lease.token)
        with self._write() as conn:
            if done and lease.kind == UPGRADE:
                conn.execute(sa.update(leases).where(*mine).values(kind=ENDED, owner=None, expires_at=None))
            elif done:
                conn.execute(sa.delete(leases).where(*mine))
            else:
                conn.execute(sa.update(leases).where(*mine).values(owner=None, expires_at=None))

    def release_all(self) -> None:
        """Give up every lease (a clean shutdown): others may take the work over at once."""
        with self._lock:
            held = list(self._held.values())
            self._held.clear()
        for lease in held:
            lease._lose()
        with self._write() as conn:
            conn.execute(sa.delete(leases).where(leases.c.owner == self.owner, leases.c.kind == ENGINE))
            conn.execute(sa.update(leases).where(leases.c.owner == self.owner).values(owner=None, expires_at=None))

    def plays(self, role: str) -> bool:
        """Whether this process holds the lease of ``role`` (one process at a time does), claiming it if free."""
        if any(lease.key == role and not lease.lost for lease in self.held(ROLE)):
            return True
        return bool(self.claim(ROLE, [role]))

    def announce(self) -> None:
        """Hold this process's presence lease (an engine is listed while it runs, even idle), unless it does
        already; the presence rows of processes long gone are deleted on the way."""
        if any(not lease.lost for lease in self.held(ENGINE)):
            return
        with self._write() as conn:
            conn.execute(sa.delete(leases).where(leases.c.kind == ENGINE, leases.c.expires_at < self._clock.now()))
        self.claim(ENGINE, [self.owner])

    def held(self, kind: str | None = None) -> list[HeldLease]:
        """The leases this process holds now (of ``kind``)."""
        with self._lock:
            return [lease for lease in self._held.values() if kind is None or lease.kind == kind]

    # -- looking -------------------------------------------------------------------------------

    def upgrades_handed_out(self, rollout_ids: Iterable[UUID]) -> set[UUID]:
        """The upgrades of these rollouts handed out and not yet ended."""
        ids = [str(rollout_id) for rollout_id in rollout_ids]
        if not ids:
            return set()
        with self.engine.connect() as conn:
            names = conn.execute(sa.select(leases.c.name).where(leases.c.kind == UPGRADE,
                                                                leases.c.rollout_id.in_(ids))).scalars()
            return {UUID(name.split(":", 1)[1]) for name in names}

    def take_ended(self, rollout_ids: Iterable[UUID]) -> set[UUID]:
        """The upgrades of these rollouts whose drivers ended them since the last call (their rows deleted)."""
        ids = [str(rollout_id) for rollout_id in rollout_ids]
        if not ids:
            return set()
        with self._write() as conn:
            names = conn.execute(sa.delete(leases).where(leases.c.kind == ENDED, leases.c.rollout_id.in_(ids))
                                 .returning(leases.c.name)).scalars().all()
        return {UUID(name.split(":", 1)[1]) for name in names}

    def forget_rollout(self, rollout_id: UUID) -> None:
        """Delete what is left of an ended rollout's handed-out upgrades."""
        with self._write() as conn:
            conn.execute(sa.delete(leases).where(leases.c.kind.in_([UPGRADE, ENDED]),
                                                 leases.c.rollout_id == str(rollout_id)))

    def free_dead_local_holders(self) -> int:
        """Free the leases of processes of this host that no longer run (a restart after a crash takes its
        work back at once instead of after the lease time); return how many were freed."""
        host = self.owner.split("/", 1)[0]
        with self.engine.connect() as conn:
            owners = conn.execute(sa.select(leases.c.owner).distinct()
                                  .where(leases.c.owner.startswith(f"{host}/", autoescape=True))).scalars().all()
        dead = [owner for owner in owners if owner != self.owner and not _runs(owner)]
        if not dead:
            return 0
        with self._write() as conn:
            conn.execute(sa.delete(leases).where(leases.c.owner.in_(dead), leases.c.kind == ENGINE))
            return conn.execute(sa.update(leases).where(leases.c.owner.in_(dead))
                                .values(owner=None, expires_at=None)).rowcount

    @contextlib.contextmanager
    def _write(self) -> Iterator[sa.Connection]:
        """A connection to write leases. On PostgreSQL each statement commits on its own (autocommit), so a
        process that hangs between two statements holds no row lock that would keep others from claiming;
        on SQLite one ``BEGIN IMMEDIATE`` transaction (one writer at a time anyway)."""
        with self.engine.connect() as conn:
            if not self._sqlite:
                yield conn.execution_options(isolation_level="AUTOCOMMIT")
                return
            conn.execution_options(**{WRITE: True})
            with conn.begin():
                yield conn


def _runs(owner: str) -> bool:
    """Whether the process named in ``owner`` (on this host) still runs; a reused pid counts as running."""
    try:
        pid = int(owner.split("/")[1])
    except (IndexError, ValueError):
        return True
    if pid == os.getpid():
        return False  # this process is new: the holder with its pid was an earlier one
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class EngineHolding:
    """What one engine process holds now, as the leases table says."""

    owner: str
    rollouts: tuple[str, ...]
    upgrades: int
    roles: tuple[str, ...]
    expires_at: datetime
    """The latest expiry of its leases: past it, the process is taken for dead."""

    @property
    def host(self) -> str:
        return self.owner.split("/")[0]

    @property
    def pid(self) -> str:
        parts = self.owner.split("/")
        return parts[1] if len(parts) > 1 else ""


@dataclass(frozen=True)
class LeaseOverview:
    """Every engine process holding leases, and the handed-out upgrades no live engine holds."""

    engines: list[EngineHolding]
    upgrades_waiting: int


def lease_overview(engine: Engine, now: datetime) -> LeaseOverview:
    """Who drives what now, read from the leases table (a lease past its expiry counts as free)."""
    held: dict[str, dict[str, list[str]]] = {}
    expiry: dict[str, datetime] = {}
    waiting = 0
    with engine.connect() as conn:
        rows = conn.execute(sa.select(leases.c.name, leases.c.kind, leases.c.owner, leases.c.expires_at)).all()
    for name, kind, owner, expires_at in rows:
        if expires_at is not None and expires_at.tzinfo is None:
            expires_at = expires_at.replace(tzinfo=UTC)
        if owner is None or expires_at is None or expires_at < now:
            waiting += kind == UPGRADE
            continue
        held.setdefault(owner, {}).setdefault(kind, [])
        if kind != ENGINE:
            held[owner][kind].append(name.split(":", 1)[1])
        expiry[owner] = max(expiry.get(owner, expires_at), expires_at)
    return LeaseOverview(
        engines=[EngineHolding(owner=owner, rollouts=tuple(sorted(kinds.get(ROLLOUT, []))),
                               upgrades=len(kinds.get(UPGRADE, [])), roles=tuple(sorted(kinds.get(ROLE, []))),
                               expires_at=expiry[owner]) for owner, kinds in sorted(held.items())],
        upgrades_waiting=waiting)
