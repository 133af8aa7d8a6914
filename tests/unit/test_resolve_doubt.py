"""An operator's decision on a step in doubt (``UpgradeService.resolve_doubt``): applied records it done (after an
install, the agent's new version on its stream too), not applied lets the engine send it again; refused, with
nothing appended, when nothing is in doubt or the agent or rollout is unknown."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from uuid import uuid4

import pytest

from dma_upgrade.adapters.clock import UuidFactory
from dma_upgrade.adapters.memory.event_store import InMemoryEventStore
from dma_upgrade.engine.agent_events import AgentVersionChanged, agent_stream_id
from dma_upgrade.engine.agent_upgrade import upgrade_stream_id
from dma_upgrade.engine.catalog import default_codec
from dma_upgrade.engine.decisions import Send, UpgradeFacts, next_action
from dma_upgrade.engine.errors import InvalidTransition, NotFound
from dma_upgrade.engine.events import NewEvent
from dma_upgrade.engine.packages import PackageKind, PackageManifest
from dma_upgrade.engine.ports import AppendResult
from dma_upgrade.engine.rollout_events import RolloutPlanned, StepPolicy
from dma_upgrade.engine.service import AgentSelection, RolloutSpec, UpgradeService
from dma_upgrade.engine.upgrade_events import Step, StepDoubtResolved, StepStatusLearned
from dma_upgrade.engine.upgrade_machine import UpgradeState
from dma_upgrade.engine.versions import parse_version
from tests.conftest import FakeClock
from tests.upgrade_states import planned_agent, put_in_doubt, record

OLD = "10.4.0.0-14112"
NEW = "10.4.9.0-14794"
OPERATOR = "otto"


@pytest.fixture
def service() -> UpgradeService:
    """Agents dma-1 and dma-2 on ``OLD`` and a package of ``NEW``, on an in-memory store."""
    service = UpgradeService(InMemoryEventStore(default_codec(), FakeClock()), FakeClock(), UuidFactory())
    for name in ("dma-1", "dma-2"):
        service.register_agent(name=name, address=f"{name}.example", version=OLD, cluster="north", actor="test")
    manifest = PackageManifest.for_version(parse_version(NEW), PackageKind.FULL)
    service.record_upload(sha256=hashlib.sha256(b"package").hexdigest(), file_name="new.dmupgrade", size=1,
                          manifest=manifest, actor="test")
    return service


@pytest.fixture
def planned(service: UpgradeService) -> RolloutPlanned:
    return service.start_rollout(RolloutSpec(package="new.dmupgrade", selection=AgentSelection(cluster="north")),
                                 actor="test")


def stream_of(service: UpgradeService, planned: RolloutPlanned, name: str) -> str:
    return upgrade_stream_id(planned_agent(planned, name).upgrade_id)


def test_an_install_resolved_as_applied_is_done_and_the_agent_runs_the_rollouts_version(
        service: UpgradeService, planned: RolloutPlanned) -> None:
    put_in_doubt(service, planned, "dma-1", Step.INSTALL, "the connection was cut")
    head = service.store.head_position()

    resolution = service.resolve_doubt(planned.rollout_id, "dma-1", True, actor=OPERATOR)

    assert (resolution.agent, resolution.step, resolution.attempt, resolution.applied, resolution.version_after,
            resolution.state) == ("dma-1", Step.INSTALL, 1, True, NEW, "Installing")
    appended = [r for r in service.store.read_all() if r.position > head]
    assert [(r.stream_id, type(r.event), r.metadata.actor, r.metadata.correlation_id) for r in appended] == [
        (agent_stream_id("dma-1"), AgentVersionChanged, OPERATOR, planned.rollout_id),
        (stream_of(service, planned, "dma-1"), StepDoubtResolved, OPERATOR, planned.rollout_id)]
    changed, resolved = appended[0].event, appended[1].event
    assert changed == AgentVersionChanged(version=NEW, previous_version=OLD,
                                          upgrade_id=str(planned_agent(planned, "dma-1").upgrade_id))
    assert resolved == StepDoubtResolved(step=Step.INSTALL, attempt=1, applied=True, version_after=NEW)
    upgrade = service.upgrade(planned_agent(planned, "dma-1").upgrade_id)
    assert (upgrade.step_in_progress, upgrade.in_doubt, upgrade.version_after) == (None, False, NEW)
    assert Step.INSTALL in upgrade.done_steps and upgrade.next_step is Step.START
    assert service.agent("dma-1").version == NEW
    assert service.agent("dma-2").version == OLD


def test_a_step_resolved_as_not_applied_is_sent_again_under_the_same_key_and_the_agent_keeps_its_version(
        service: UpgradeService, planned: RolloutPlanned) -> None:
    before = put_in_doubt(service, planned, "dma-1", Step.INSTALL)
    head = service.store.head_position()

    resolution = service.resolve_doubt(planned.rollout_id, "dma-1", False, actor=OPERATOR)

    assert (resolution.step, resolution.applied, resolution.version_after, resolution.state) == (
        Step.INSTALL, False, None, "Installing")
    [appended] = [r for r in service.store.read_all() if r.position > head]
    assert appended.stream_id == stream_of(service, planned, "dma-1") and appended.metadata.actor == OPERATOR
    assert appended.event == StepDoubtResolved(step=Step.INSTALL, attempt=1, applied=False)
    upgrade = service.upgrade(planned_agent(planned, "dma-1").upgrade_id)
    assert (upgrade.step_in_progress, upgrade.in_doubt, upgrade.attempts[Step.INSTALL]) == (Step.INSTALL, False, 1)
    facts = UpgradeFacts(now=service.clock.now(), policy=StepPolicy(), agent=service.agent("dma-1"))
    assert next_action(upgrade, facts) == Send(Step.INSTALL, before.idempotency_key(Step.INSTALL, 1))
    assert service.agent("dma-1").version == OLD


def test_a_step_other_than_the_install_resolved_as_applied_changes_no_version(
        service: UpgradeService, planned: RolloutPlanned) -> None:
    put_in_doubt(service, planned, "dma-2", Step.UPLOAD)
    head = service.store.head_position()

    resolution = service.resolve_doubt(planned.rollout_id, "dma-2", True, actor=OPERATOR)

    assert (resolution.step, resolution.version_after, resolution.state) == (Step.UPLOAD, None, "Uploaded")
    [appended] = [r for r in service.store.read_all() if r.position > head]
    assert appended.event == StepDoubtResolved(step=Step.UPLOAD, attempt=1, applied=True)
    assert service.agent("dma-2").version == OLD


@pytest.mark.parametrize("applied", [True, False])
def test_resolving_when_nothing_is_in_doubt_is_refused_and_appends_nothing(
        service: UpgradeService, planned: RolloutPlanned, applied: bool) -> None:
    head = service.store.head_position()
    with pytest.raises(InvalidTransition, match="no step is in doubt"):
        service.resolve_doubt(planned.rollout_id, "dma-1", applied, actor=OPERATOR)  # never scheduled
    assert service.store.head_position() == head

    upgrade = put_in_doubt(service, planned, "dma-1", Step.INSTALL)
    record(service, planned, "dma-1", upgrade.learn_status(Step.INSTALL, "unknown"))  # the agent answered after all
    head = service.store.head_position()
    with pytest.raises(InvalidTransition, match="cannot resolve a step in doubt from state Installing"):
        service.resolve_doubt(planned.rollout_id, "dma-1", applied, actor=OPERATOR)
    assert service.store.head_position() == head
    assert service.agent("dma-1").version == OLD


def test_resolving_twice_is_refused_the_second_time(service: UpgradeService, planned: RolloutPlanned) -> None:
    put_in_doubt(service, planned, "dma-1", Step.INSTALL)
    service.resolve_doubt(planned.rollout_id, "dma-1", True, actor=OPERATOR)
    head = service.store.head_position()
    with pytest.raises(InvalidTransition):
        service.resolve_doubt(planned.rollout_id, "dma-1", True, actor=OPERATOR)
    assert service.store.head_position() == head


def test_an_unknown_agent_or_rollout_is_not_found_and_appends_nothing(
        service: UpgradeService, planned: RolloutPlanned) -> None:
    put_in_doubt(service, planned, "dma-1", Step.INSTALL)
    service.register_agent(name="dma-9", address="dma-9.example", version=OLD, cluster="south", actor="test")
    head = service.store.head_position()
    with pytest.raises(NotFound, match="agent 'dma-9' is not part of rollout"):
        service.resolve_doubt(planned.rollout_id, "dma-9", True, actor=OPERATOR)
    with pytest.raises(NotFound, match="agent 'nope' is not part of rollout"):
        service.resolve_doubt(planned.rollout_id, "nope", True, actor=OPERATOR)
    with pytest.raises(NotFound, match="unknown rollout"):
        service.resolve_doubt(uuid4(), "dma-1", True, actor=OPERATOR)
    assert service.store.head_position() == head


class _EngineLearnsFirst:
    """An event store on which the engine learns the status of the step in doubt just before the operator's
    decision is appended (the operator decided on what they read before)."""

    def __init__(self, service: UpgradeService, planned: RolloutPlanned) -> None:
        self.inner = service.store
        self.service = service
        self.planned = planned
        self.raced = False

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def append(self, stream_id: str, expected_version: int, events: Sequence[NewEvent]) -> AppendResult:
        if not self.raced and stream_id == stream_of(self.service, self.planned, "dma-1"):
            self.raced = True
            upgrade = self.service.upgrade(planned_agent(self.planned, "dma-1").upgrade_id)
            [learned] = upgrade.learn_status(Step.INSTALL, "succeeded")
            self.inner.append(stream_id, upgrade.version, [NewEvent(event_id=uuid4(), event=learned)])
        return self.inner.append(stream_id, expected_version, events)


def test_a_decision_raced_by_the_engine_is_taken_again_on_what_the_engine_recorded(
        service: UpgradeService, planned: RolloutPlanned) -> None:
    put_in_doubt(service, planned, "dma-1", Step.INSTALL)
    racing = _EngineLearnsFirst(service, planned)
    service.store = racing  # type: ignore[assignment]
    head = racing.inner.head_position()

    with pytest.raises(InvalidTransition, match="no step is in doubt"):
        service.resolve_doubt(planned.rollout_id, "dma-1", False, actor=OPERATOR)

    assert racing.raced
    [learned] = [r for r in racing.inner.read_all() if r.position > head]
    assert learned.event == StepStatusLearned(step=Step.INSTALL, attempt=1, status="succeeded")
    assert service.upgrade(planned_agent(planned, "dma-1").upgrade_id).state is UpgradeState.INSTALLING
