"""A package executes one rollout (``UpgradeService.mark_package_used``). Invariants: the first install of a rollout
marks its package used, once; any other rollout's install is refused then, by this process or another, whatever
this process remembers; and once a process has seen the package used by a rollout, that rollout's later installs
do not read the package again (a recorded use never changes)."""

from __future__ import annotations

import hashlib
from uuid import uuid4

import pytest

from dma_upgrade.adapters.clock import UuidFactory
from dma_upgrade.adapters.memory.event_store import InMemoryEventStore
from dma_upgrade.engine.catalog import default_codec
from dma_upgrade.engine.errors import Conflict
from dma_upgrade.engine.events import RecordedEvent
from dma_upgrade.engine.packages import PackageKind, PackageManifest
from dma_upgrade.engine.rollout_events import PackageUsed, RolloutPlanned, package_stream_id
from dma_upgrade.engine.service import AgentSelection, RolloutSpec, UpgradeService
from dma_upgrade.engine.versions import parse_version
from tests.conftest import FakeClock

SHA256 = hashlib.sha256(b"package").hexdigest()


class CountingStore(InMemoryEventStore):
    """The in-memory store, counting reads of the package's stream."""

    package_reads = 0

    def read_stream(self, stream_id: str, after_version: int = 0) -> list[RecordedEvent]:
        if stream_id == package_stream_id(SHA256):
            self.package_reads += 1
        return super().read_stream(stream_id, after_version)


@pytest.fixture
def store() -> CountingStore:
    return CountingStore(default_codec(), FakeClock())


def _service(store: CountingStore) -> UpgradeService:
    return UpgradeService(store, FakeClock(), UuidFactory())


@pytest.fixture
def planned(store: CountingStore) -> RolloutPlanned:
    service = _service(store)
    for name in ("dma-1", "dma-2"):
        service.register_agent(name=name, address=f"{name}.example", version="10.4.0.0-14112", cluster="north",
                               actor="test")
    service.record_upload(sha256=SHA256, file_name="new.dmupgrade", size=1, actor="test",
                          manifest=PackageManifest.for_version(parse_version("10.4.9.0-14794"), PackageKind.FULL))
    return service.start_rollout(RolloutSpec(package=SHA256, selection=AgentSelection(cluster="north")), actor="test")


def _uses(store: CountingStore) -> list[PackageUsed]:
    return [r.event for r in store.read_stream(package_stream_id(SHA256)) if isinstance(r.event, PackageUsed)]


def test_a_rollout_marks_its_package_used_once_and_then_stops_reading_it(store: CountingStore,
                                                                        planned: RolloutPlanned) -> None:
    service = _service(store)
    service.mark_package_used(planned, "dma-1", actor="engine")
    reads = store.package_reads
    service.mark_package_used(planned, "dma-2", actor="engine")
    assert store.package_reads == reads
    other = _service(store)  # another process: reads the package, finds it used by this rollout, appends nothing
    other.mark_package_used(planned, "dma-2", actor="engine")
    assert store.package_reads == reads + 1
    assert [(u.rollout_id, u.agent) for u in _uses(store)] == [(planned.rollout_id, "dma-1")]


def test_another_rollout_is_refused_whatever_a_process_remembers(store: CountingStore,
                                                                 planned: RolloutPlanned) -> None:
    service, other = _service(store), _service(store)
    service.mark_package_used(planned, "dma-1", actor="engine")
    later = planned.model_copy(update={"rollout_id": uuid4()})
    for process in (service, other):
        with pytest.raises(Conflict, match="was used by rollout"):
            process.mark_package_used(later, "dma-2", actor="engine")
    assert [u.rollout_id for u in _uses(store)] == [planned.rollout_id]
