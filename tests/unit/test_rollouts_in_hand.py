"""The rollouts a runner keeps in hand for the upgrades it drives (``rollout_runner._RolloutsInHand``).
Invariants: a rollout's plan is read from the store once while it is in use or among the last ``KEPT_ROLLOUTS``
used, however often its drives come and go; a rollout in use is never dropped; one dropped is read again when
next used; a kept watch still sees what was recorded on the rollout since (a cancel); and a drive that failed
(a refresh that could not apply what it read, say) leaves no one waiting on its watch, and the next drive a
fresh read."""

from __future__ import annotations

import hashlib
import threading
from collections import Counter
from uuid import UUID, uuid4

import pytest

from dma_upgrade.adapters.clock import UuidFactory
from dma_upgrade.adapters.memory.event_store import InMemoryEventStore
from dma_upgrade.adapters.runtime.rollout_runner import KEPT_ROLLOUTS, _RolloutsInHand
from dma_upgrade.engine.catalog import default_codec
from dma_upgrade.engine.commands import CancelRollout
from dma_upgrade.engine.errors import InvalidTransition
from dma_upgrade.engine.events import NewEvent, RecordedEvent
from dma_upgrade.engine.packages import PackageKind, PackageManifest
from dma_upgrade.engine.rollout import RolloutState
from dma_upgrade.engine.rollout_events import RolloutCompleted, rollout_stream_id
from dma_upgrade.engine.service import AgentSelection, RolloutSpec, UpgradeService
from dma_upgrade.engine.versions import parse_version
from tests.conftest import FakeClock


class CountingStore(InMemoryEventStore):
    """The in-memory store, counting whole reads (from the first event) of each stream."""

    def __init__(self) -> None:
        super().__init__(default_codec(), FakeClock())
        self.whole_reads: Counter[str] = Counter()

    def read_stream(self, stream_id: str, after_version: int = 0) -> list[RecordedEvent]:
        if after_version == 0:
            self.whole_reads[stream_id] += 1
        return super().read_stream(stream_id, after_version)


@pytest.fixture
def store() -> CountingStore:
    return CountingStore()


@pytest.fixture
def service(store: CountingStore) -> UpgradeService:
    return UpgradeService(store, FakeClock(), UuidFactory())


def _rollouts(service: UpgradeService, count: int) -> list[UUID]:
    """``count`` new rollouts, each of an agent (in a cluster) of its own with a package of its own."""
    ids = []
    for _ in range(count):
        index = len(service.agents())
        name = f"dma-{index}"
        service.register_agent(name=name, address=f"{name}.example", version="10.4.0.0-14112", cluster=f"c{index}",
                               actor="test")
        sha256 = hashlib.sha256(f"package {index}".encode()).hexdigest()
        service.record_upload(sha256=sha256, file_name=f"p{index}.dmupgrade", size=1, actor="test",
                              manifest=PackageManifest.for_version(parse_version("10.4.9.0-14794"), PackageKind.FULL))
        ids.append(service.start_rollout(RolloutSpec(package=sha256, selection=AgentSelection(names=(name,))),
                                         actor="test").rollout_id)
    return ids


def _reads(store: CountingStore, rollout_id: UUID) -> int:
    return store.whole_reads[rollout_stream_id(rollout_id)]


def test_a_rollout_used_again_after_its_drives_ended_is_not_read_again(
        service: UpgradeService, store: CountingStore) -> None:
    (rollout_id,) = _rollouts(service, 1)
    in_hand = _RolloutsInHand(service)
    before = _reads(store, rollout_id)

    for _ in range(5):  # one drive after another: none in use in between
        with in_hand.use(rollout_id) as (plan, agents, _watch):
            assert plan.rollout_id == rollout_id
            assert [a.name for a in agents.values()] == ["dma-0"]

    assert _reads(store, rollout_id) - before == 1


def test_beyond_the_kept_rollouts_the_least_recently_used_is_dropped_and_read_again(
        service: UpgradeService, store: CountingStore) -> None:
    in_use, *kept = _rollouts(service, KEPT_ROLLOUTS + 1)
    in_hand = _RolloutsInHand(service)

    with in_hand.use(in_use):
        for rollout_id in kept:
            with in_hand.use(rollout_id):
                pass
        reads = {r: _reads(store, r) for r in [in_use, *kept]}
        assert len(in_hand._entries) == KEPT_ROLLOUTS + 1  # the one in use is never dropped
    # in_use was used last: of the KEPT_ROLLOUTS + 1 unused now, kept[0] was used least recently, and went

    for rollout_id in [in_use, *kept[1:]]:
        with in_hand.use(rollout_id):
            pass
    assert {r: _reads(store, r) - reads[r] for r in [in_use, *kept[1:]]} == dict.fromkeys([in_use, *kept[1:]], 0)
    with in_hand.use(kept[0]):
        pass
    assert _reads(store, kept[0]) - reads[kept[0]] == 1


def test_a_drive_that_failed_leaves_the_next_one_a_fresh_read(service: UpgradeService, store: CountingStore) -> None:
    (rollout_id,) = _rollouts(service, 1)
    in_hand = _RolloutsInHand(service)
    before = _reads(store, rollout_id)

    with pytest.raises(RuntimeError), in_hand.use(rollout_id):
        raise RuntimeError("the drive failed")
    with in_hand.use(rollout_id):
        pass

    assert _reads(store, rollout_id) - before == 2


def test_a_kept_watch_sees_a_cancel_recorded_after_it_was_read(service: UpgradeService) -> None:
    (rollout_id,) = _rollouts(service, 1)
    in_hand = _RolloutsInHand(service)
    with in_hand.use(rollout_id) as (_plan, _agents, watch):
        assert watch.refresh(watch.mark()).state is RolloutState.PLANNED

    service.control(CancelRollout(rollout_id), actor="test")

    with in_hand.use(rollout_id) as (_plan, _agents, watch):
        assert watch.refresh(watch.mark()).state is RolloutState.CANCELLED


def test_a_refresh_that_cannot_apply_what_it_read_leaves_no_one_waiting_and_its_watch_is_dropped(
        service: UpgradeService, store: CountingStore) -> None:
    (rollout_id,) = _rollouts(service, 1)
    in_hand = _RolloutsInHand(service)
    with in_hand.use(rollout_id) as (_plan, _agents, watch):
        pass
    store.append(rollout_stream_id(rollout_id), 1,
                 [NewEvent(event_id=uuid4(), event=RolloutCompleted(completed=1, cancelled=0))])
    before = _reads(store, rollout_id)
    outcomes: list[str] = []

    def refresh_then_refresh_again() -> None:
        with pytest.raises(InvalidTransition), in_hand.use(rollout_id) as (_plan, _agents, kept):
            assert kept is watch
            kept.refresh(kept.mark())  # a Planned rollout cannot complete: the event is refused
        outcomes.append("refused")
        watch.refresh(watch.mark())  # not left marked as reading: it returns rather than waits
        outcomes.append("returned")

    worker = threading.Thread(target=refresh_then_refresh_again, daemon=True)
    worker.start()
    worker.join(timeout=30)  # a guard against a hang, not a measure of time

    assert outcomes == ["refused", "returned"]
    with pytest.raises(InvalidTransition), in_hand.use(rollout_id):  # the next drive reads afresh, not that watch
        pass
    assert _reads(store, rollout_id) - before == 1
