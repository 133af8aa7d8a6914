"""The leases table on SQLite and PostgreSQL: claims skip held rows, expiry hands work over, renewal
keeps it, a stale holder finds out without I/O, and processes claiming at once never share a row."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from dma_upgrade.adapters.runtime.leased_work import run_leased
from dma_upgrade.adapters.sql.database import create_db_engine
from dma_upgrade.adapters.sql.leases import MARGIN, ROLE, ROLLOUT, UPGRADE, SqlLeases, owner_identity
from dma_upgrade.engine.errors import LeaseLost, StoreUnavailable
from tests.conftest import FakeClock

SECONDS = 10.0


class FakeMonotonic:
    """The holder's own monotonic clock, moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def engine(db_url: str) -> Iterator[sa.Engine]:
    engine = create_db_engine(db_url)
    yield engine
    engine.dispose()


def process(engine: sa.Engine, clock: FakeClock, name: str, monotonic: FakeMonotonic | None = None) -> SqlLeases:
    return SqlLeases(engine, clock, owner=f"test/{name}", seconds=SECONDS, monotonic=monotonic or FakeMonotonic())


def test_a_held_lease_is_skipped_by_others_until_it_expires_then_taken_over_with_a_new_token(
        engine: sa.Engine, clock: FakeClock) -> None:
    a, b = process(engine, clock, "a"), process(engine, clock, "b")
    rollout = uuid.uuid4()
    [held] = a.claim(ROLLOUT, [rollout])
    assert b.claim(ROLLOUT, [rollout]) == []
    clock.advance(SECONDS + 1)
    [taken] = b.claim(ROLLOUT, [rollout])
    assert taken.token == held.token + 1 and taken.key == str(rollout)
    assert a.renew() == [held]
    with pytest.raises(LeaseLost):
        held.check()
    taken.check()


def test_renewal_keeps_a_lease_past_its_first_expiry(engine: sa.Engine, clock: FakeClock) -> None:
    monotonic = FakeMonotonic()
    a, b = process(engine, clock, "a", monotonic), process(engine, clock, "b")
    [held] = a.claim(ROLLOUT, ["r"])
    for _ in range(5):
        clock.advance(SECONDS / 2)
        monotonic.now += SECONDS / 2
        assert a.renew() == []
        held.check()
    assert b.claim(ROLLOUT, ["r"]) == []


def test_a_holder_that_stopped_renewing_knows_it_lost_the_lease_before_anyone_can_take_it(
        engine: sa.Engine, clock: FakeClock) -> None:
    monotonic = FakeMonotonic()
    a, b = process(engine, clock, "a", monotonic), process(engine, clock, "b")
    [held] = a.claim(ROLLOUT, ["r"])
    monotonic.now += SECONDS * (1 - MARGIN)  # a hung process wakes up: no I/O needed to know
    with pytest.raises(LeaseLost):
        held.check()
    clock.advance(SECONDS * (1 - MARGIN))
    assert b.claim(ROLLOUT, ["r"]) == [], "others still wait: the holder stops acting first"


def test_handed_out_upgrades_are_shared_between_claimers_and_deleted_when_done(
        engine: sa.Engine, clock: FakeClock) -> None:
    a, b = process(engine, clock, "a"), process(engine, clock, "b")
    rollout = uuid.uuid4()
    upgrades = [uuid.uuid4() for _ in range(5)]
    a.offer(rollout, upgrades)
    a.offer(rollout, upgrades[:2])  # handing out again changes nothing
    first = a.claim(UPGRADE, limit=3)
    second = b.claim(UPGRADE, limit=10)
    assert len(first) == 3 and len(second) == 2
    assert {lease.key for lease in first + second} == {str(u) for u in upgrades}
    assert all(lease.rollout_id == str(rollout) for lease in first + second)
    a.release(first[0], done=True)
    a.release(first[1], done=False)
    assert a.upgrades_handed_out([rollout]) == {u for u in upgrades if str(u) != first[0].key}
    [again] = b.claim(UPGRADE, limit=10)
    assert again.key == first[1].key
    with pytest.raises(LeaseLost):
        first[1].check()


def test_a_released_lease_of_an_old_token_does_not_free_the_new_holders_row(
        engine: sa.Engine, clock: FakeClock) -> None:
    a, b = process(engine, clock, "a"), process(engine, clock, "b")
    [old] = a.claim(ROLE, ["fleet"])
    clock.advance(SECONDS + 1)
    [new] = b.claim(ROLE, ["fleet"])
    a.release(old, done=True)
    a.release_all()
    assert a.claim(ROLE, ["fleet"]) == []
    assert b.renew() == [] and b.held() == [new]


def test_a_clean_shutdown_gives_every_lease_back_at_once(engine: sa.Engine, clock: FakeClock) -> None:
    a, b = process(engine, clock, "a"), process(engine, clock, "b")
    a.offer(uuid.uuid4(), [uuid.uuid4(), uuid.uuid4()])
    held = a.claim(UPGRADE, limit=5) + a.claim(ROLLOUT, ["r"])
    a.release_all()
    assert all(lease.lost for lease in held) and a.held() == []
    assert len(b.claim(UPGRADE, limit=5)) == 2 and len(b.claim(ROLLOUT, ["r"])) == 1


def test_processes_claiming_at_once_never_get_the_same_upgrade(engine: sa.Engine, clock: FakeClock) -> None:
    rollout = uuid.uuid4()
    upgrades = [uuid.uuid4() for _ in range(120)]
    process(engine, clock, "offer").offer(rollout, upgrades)
    claimers = [process(engine, clock, f"c{i}") for i in range(4)]
    got: list[list[str]] = [[] for _ in claimers]
    start = threading.Barrier(len(claimers))

    def claim(i: int) -> None:
        start.wait()
        while True:
            claimed = claimers[i].claim(UPGRADE, limit=7)
            if not claimed:
                return
            got[i].extend(lease.key for lease in claimed)

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(len(claimers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    every = [key for keys in got for key in keys]
    assert sorted(every) == sorted(str(u) for u in upgrades), "each upgrade claimed exactly once"


def test_leases_of_a_crashed_process_on_this_host_are_freed_at_once_and_a_live_ones_are_not(
        engine: sa.Engine, clock: FakeClock) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    host = owner_identity().split("/")[0]
    crashed = SqlLeases(engine, clock, owner=f"{host}/{dead.stdout.strip()}/dead", seconds=SECONDS)
    alive = SqlLeases(engine, clock, owner=f"{host}/{os.getppid()}/alive", seconds=SECONDS)
    crashed.claim(ROLLOUT, ["r1"])
    alive.claim(ROLLOUT, ["r2"])
    me = SqlLeases(engine, clock, seconds=SECONDS)
    assert me.free_dead_local_holders() == 1
    assert [lease.key for lease in me.claim(ROLLOUT, ["r1", "r2"])] == ["r1"]


def test_an_engine_announces_itself_once_and_the_presence_of_one_long_gone_is_cleared(
        engine: sa.Engine, clock: FakeClock) -> None:
    gone, alive = process(engine, clock, "gone"), process(engine, clock, "alive")
    gone.announce()
    clock.advance(SECONDS + 1)
    alive.announce()
    alive.announce()
    with engine.connect() as conn:
        names = conn.execute(sa.text("SELECT name FROM leases WHERE kind = 'engine'")).scalars().all()
    assert names == ["engine:test/alive"]
    alive.release_all()
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM leases")).scalar() == 0


@pytest.mark.parametrize(("paused_past_the_lease", "logged"), [
    (True, "was taken over by another engine process; this one stops"),
    (False, "paused: the database cannot be reached")])
def test_a_drive_whose_database_call_failed_says_whether_it_was_paused_past_its_lease(
        engine: sa.Engine, clock: FakeClock, caplog: pytest.LogCaptureFixture, paused_past_the_lease: bool,
        logged: str) -> None:
    monotonic = FakeMonotonic()
    leases = process(engine, clock, "a", monotonic)
    [held] = leases.claim(ROLLOUT, ["r"])

    def work() -> None:
        if paused_past_the_lease:  # SIGSTOPped mid-append: the server ended its transaction meanwhile
            monotonic.now += SECONDS
        raise StoreUnavailable("server closed the connection unexpectedly")

    assert run_leased(leases, held, work, "rollout r", on_error=pytest.fail) is None
    assert [r.getMessage() for r in caplog.records if "rollout r" in r.getMessage()] == [
        f"rollout r {logged} (server closed the connection unexpectedly)"]
