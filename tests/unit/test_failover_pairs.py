"""A pair is a pair: registration refuses a broken failover pair, a switch-over policy refuses a partial or
incomplete one (unless --allow-partial-pair), and the plan says what each pair goes through."""

from __future__ import annotations

import hashlib
import json

import pytest

from dma_upgrade.adapters.clock import UuidFactory
from dma_upgrade.adapters.memory.event_store import InMemoryEventStore
from dma_upgrade.engine.agent_events import AgentRegistered, FailoverRole
from dma_upgrade.engine.catalog import default_codec
from dma_upgrade.engine.errors import InvalidInput
from dma_upgrade.engine.packages import PackageKind, PackageManifest
from dma_upgrade.engine.rollout_events import FailoverPolicy, RolloutPlanned, rollout_stream_id
from dma_upgrade.engine.service import AgentSelection, OptionOverrides, RolloutSpec, UpgradeService
from dma_upgrade.engine.upgrade_events import Step
from dma_upgrade.engine.versions import parse_version
from tests.conftest import FakeClock

OLD = "10.4.0.0-14112"
NEW = "10.4.9.0-14794"
MAIN, BACKUP = FailoverRole.MAIN, FailoverRole.BACKUP
SWITCH_OVER_POLICIES = ["backup-first", "backup-first-switch-back"]


@pytest.fixture
def service() -> UpgradeService:
    """An empty inventory on an in-memory store, with a package of ``NEW`` uploaded."""
    service = UpgradeService(InMemoryEventStore(default_codec(), FakeClock()), FakeClock(), UuidFactory())
    manifest = PackageManifest.for_version(parse_version(NEW), PackageKind.FULL)
    service.record_upload(sha256=hashlib.sha256(b"package").hexdigest(), file_name="new.dmupgrade", size=1,
                          manifest=manifest, actor="test")
    return service


def register(service: UpgradeService, name: str, partner: str | None = None, role: FailoverRole | None = None,
             cluster: str | None = "north") -> None:
    service.register_agent(name=name, address=f"{name}.example", version=OLD, cluster=cluster,
                           failover_partner=partner, failover_role=role, actor="test")


def pair(service: UpgradeService, main: str = "dma-main", backup: str = "dma-backup") -> None:
    """A complete pair, registered the documented way: the first naming the second, then the second."""
    register(service, main, backup, MAIN)
    register(service, backup, main, BACKUP)


def refused_registration(service: UpgradeService, match: str, name: str, partner: str, role: FailoverRole,
                         cluster: str | None = "north") -> str:
    """The registration is InvalidInput matching ``match``, and nothing is appended."""
    head = service.store.head_position()
    with pytest.raises(InvalidInput, match=match) as refusal:
        register(service, name, partner, role, cluster)
    assert service.store.head_position() == head
    assert name not in {a.name for a in service.agents()}
    return str(refusal.value)


def spec(*names: str, policy: str, **options: object) -> RolloutSpec:
    return RolloutSpec(package="new.dmupgrade", selection=AgentSelection(names=names),
                       failover_policy=FailoverPolicy.parse(policy), **options)  # type: ignore[arg-type]


def refused_plan(service: UpgradeService, rollout: RolloutSpec, *mentions: str) -> str:
    """Planning and starting ``rollout`` are InvalidInput naming ``mentions``; nothing is appended."""
    head = service.store.head_position()
    with pytest.raises(InvalidInput) as planned:
        service.plan(rollout)
    with pytest.raises(InvalidInput) as started:
        service.start_rollout(rollout, actor="test")
    assert service.store.head_position() == head
    message = str(planned.value)
    assert str(started.value) == message
    for mention in (*mentions, "--allow-partial-pair"):
        assert mention in message, message
    return message


# -- registration ---------------------------------------------------------------------------------


def test_the_documented_way_forms_a_pair_in_either_order(service: UpgradeService) -> None:
    pair(service)
    register(service, "b-backup", "b-main", BACKUP)  # the backup first, naming a main not registered yet
    register(service, "b-main", "b-backup", MAIN)

    agents = {a.name: a for a in service.agents()}
    assert (agents["dma-main"].failover_partner, agents["dma-backup"].failover_partner) == ("dma-backup", "dma-main")
    assert (agents["b-main"].failover_role, agents["b-backup"].failover_role) == (MAIN, BACKUP)


def test_an_agent_cannot_be_its_own_failover_partner(service: UpgradeService) -> None:
    refused_registration(service, "agent dma-1 cannot be its own failover partner", "dma-1", "dma-1", MAIN)


def test_a_partner_and_a_role_come_together(service: UpgradeService) -> None:
    head = service.store.head_position()
    with pytest.raises(InvalidInput, match="needs both --failover-partner and --failover-role"):
        register(service, "dma-1", "dma-2", None)
    with pytest.raises(InvalidInput, match="needs both --failover-partner and --failover-role"):
        register(service, "dma-1", None, MAIN)
    assert service.store.head_position() == head


def test_a_partner_in_another_cluster_is_refused(service: UpgradeService) -> None:
    register(service, "dma-main", "dma-backup", MAIN, cluster="north")

    message = refused_registration(service, "dma-main cannot be the failover partner of dma-backup", "dma-backup",
                                   "dma-main", BACKUP, cluster="south")
    assert "dma-main is in cluster north, dma-backup would be in cluster south" in message
    refused_registration(service, "dma-main is in cluster north, dma-backup would be in no cluster", "dma-backup",
                         "dma-main", BACKUP, cluster=None)


def test_a_partner_with_the_same_role_is_refused(service: UpgradeService) -> None:
    register(service, "dma-a", "dma-b", MAIN)

    refused_registration(service, "dma-a cannot be the failover partner of dma-b: dma-a is the main already",
                         "dma-b", "dma-a", MAIN)


def test_a_registered_partner_naming_another_agent_is_refused_saying_how_a_pair_is_formed(
        service: UpgradeService) -> None:
    pair(service)

    message = refused_registration(service, "dma-main cannot be the failover partner of dma-spare", "dma-spare",
                                   "dma-main", BACKUP)
    assert "dma-main is registered already and is paired with dma-backup" in message
    assert "register the first member naming the second" in message
    assert "then the second naming the first" in message


def test_a_registered_partner_naming_nobody_is_refused_saying_how_a_pair_is_formed(service: UpgradeService) -> None:
    register(service, "dma-1")

    message = refused_registration(service, "dma-1 cannot be the failover partner of dma-2", "dma-2", "dma-1",
                                   BACKUP)
    assert "dma-1 is registered already and names no failover partner" in message
    assert "register the first member naming the second" in message


# -- planning under a switch-over policy ----------------------------------------------------------


@pytest.mark.parametrize("policy", SWITCH_OVER_POLICIES)
@pytest.mark.parametrize("member", ["dma-main", "dma-backup"])
def test_one_member_of_a_pair_alone_is_refused_under_a_switch_over_policy(
        service: UpgradeService, policy: str, member: str) -> None:
    pair(service)
    register(service, "dma-1")
    partner = "dma-backup" if member == "dma-main" else "dma-main"

    message = refused_plan(service, spec("dma-1", member, policy=policy), f"failover policy {policy}")
    assert f"agent {member}: its failover partner {partner} is not in this rollout" in message


@pytest.mark.parametrize("policy", SWITCH_OVER_POLICIES)
def test_a_member_of_an_incomplete_pair_is_refused_under_a_switch_over_policy(
        service: UpgradeService, policy: str) -> None:
    register(service, "dma-main", "dma-backup", MAIN)  # dma-backup never registered

    message = refused_plan(service, spec("dma-main", policy=policy), "agent dma-main")
    assert "its failover partner dma-backup is not registered (the pair is incomplete until dma-backup is " \
           "registered naming dma-main as its partner)" in message


@pytest.mark.parametrize("policy", SWITCH_OVER_POLICIES)
def test_a_member_whose_partner_does_not_name_it_back_is_refused_even_with_both_selected(
        service: UpgradeService, policy: str) -> None:
    register(service, "dma-main", "dma-backup", MAIN)
    register(service, "dma-backup")  # registered on its own: it names nobody

    message = refused_plan(service, spec("dma-main", "dma-backup", policy=policy), "agent dma-main")
    assert "its failover partner dma-backup names no partner, not dma-main (the pair is incomplete)" in message


@pytest.mark.parametrize("policy", SWITCH_OVER_POLICIES)
def test_a_member_whose_partner_is_in_another_cluster_is_refused(service: UpgradeService, policy: str) -> None:
    register(service, "dma-main", "dma-backup", MAIN, cluster="north")
    register(service, "dma-backup", "dma-main", BACKUP, cluster="north")
    # registration refuses a pair across clusters now; a stored pair from before can still be one
    register(service, "far-main", "far-backup", MAIN, cluster="north")
    service.append("agent-far-backup", 0, [_registered("far-backup", "far-main", BACKUP, "south")], actor="test")

    message = refused_plan(service, spec("far-main", "far-backup", policy=policy), "agent far-main",
                           "its failover partner far-backup is in cluster south, far-main in cluster north")
    assert "agent far-backup: its failover partner far-main is in cluster north, far-backup in cluster south" \
           in message


def _registered(name: str, partner: str, role: FailoverRole, cluster: str) -> AgentRegistered:
    return AgentRegistered(name=name, address=f"{name}.example", cluster=cluster, version=OLD,
                           failover_partner=partner, failover_role=role)


@pytest.mark.parametrize("policy", SWITCH_OVER_POLICIES)
def test_the_whole_pair_is_planned_with_its_switch_over(service: UpgradeService, policy: str) -> None:
    pair(service)

    planned = service.plan(spec("dma-main", "dma-backup", policy=policy))

    main, backup = planned.agents
    assert backup.plan.switch_over and main.after == ("dma-backup",)
    assert main.plan.switch_over is (policy == "backup-first-switch-back")
    assert not planned.allow_partial_pair and not planned.notes  # Auto Start is on by default


@pytest.mark.parametrize("selection", [("dma-main",), ("dma-backup",)])
def test_one_member_alone_is_accepted_under_simultaneous_and_upload_only(
        service: UpgradeService, selection: tuple[str, ...]) -> None:
    pair(service)

    simultaneous = service.plan(spec(*selection, policy="simultaneous"))
    upload_only = service.plan(spec(*selection, policy="backup-first", upload_only=True))

    assert [a.name for a in simultaneous.agents] == list(selection) == [a.name for a in upload_only.agents]
    assert not simultaneous.agents[0].plan.switch_over and not upload_only.agents[0].plan.switch_over
    assert not any("--allow-partial-pair" in w for w in (*simultaneous.warnings, *upload_only.warnings))


def test_an_incomplete_pair_is_accepted_under_simultaneous(service: UpgradeService) -> None:
    register(service, "dma-main", "dma-backup", MAIN)

    planned = service.plan(spec("dma-main", policy="simultaneous"))

    assert [a.name for a in planned.agents] == ["dma-main"] and not planned.notes


@pytest.mark.parametrize("policy", SWITCH_OVER_POLICIES)
def test_allow_partial_pair_upgrades_the_member_alone_without_a_switch_over_and_is_recorded(
        service: UpgradeService, policy: str) -> None:
    pair(service)

    planned = service.start_rollout(spec("dma-main", policy=policy, allow_partial_pair=True), actor="test")

    [main] = planned.agents
    assert not main.plan.switch_over and main.after == ()
    assert Step.SWITCH_OVER not in main.plan.steps
    warning = ("agent dma-main: upgraded without its failover partner dma-backup (--allow-partial-pair): "
               "no switch-over; if dma-main is the active member the pair is down during its upgrade")
    assert warning in main.warnings and warning in planned.warnings
    [stored] = [r.event for r in service.store.read_stream(rollout_stream_id(planned.rollout_id))
                if isinstance(r.event, RolloutPlanned)]
    assert stored.allow_partial_pair and stored == planned


def test_allow_partial_pair_upgrades_a_member_of_an_incomplete_pair_alone_with_its_partner_in_the_rollout(
        service: UpgradeService) -> None:
    register(service, "dma-main", "dma-backup", MAIN)
    register(service, "dma-backup")

    planned = service.plan(spec("dma-main", "dma-backup", policy="backup-first", allow_partial_pair=True))

    main, backup = planned.agents
    assert not main.plan.switch_over and main.after == () and not backup.plan.switch_over
    assert any(w.startswith("agent dma-main: upgraded without its failover partner dma-backup") for w in main.warnings)
    assert planned.allow_partial_pair


def test_a_complete_pair_is_unaffected_by_allow_partial_pair(service: UpgradeService) -> None:
    pair(service)

    planned = service.plan(spec("dma-main", "dma-backup", policy="backup-first", allow_partial_pair=True))

    main, backup = planned.agents
    assert backup.plan.switch_over and main.after == ("dma-backup",)
    assert not any("--allow-partial-pair" in w for w in planned.warnings)


# -- what the plan says a pair goes through -------------------------------------------------------

SIMULTANEOUS_NOTE = "pair dma-main/dma-backup: the pair is down together during its upgrade (failover policy " \
                    "simultaneous)"


def auto_start_note(agent: str) -> str:
    return (f"agent {agent}: Auto Start is off: the switch-over waits for a manual start of {agent} "
            f"(dma-upgrade agents start {agent})")


def test_under_simultaneous_the_plan_notes_that_the_pair_is_down_together(service: UpgradeService) -> None:
    pair(service)
    register(service, "dma-1")

    planned = service.plan(RolloutSpec(package="new.dmupgrade", selection=AgentSelection(cluster="north"),
                                       failover_policy=FailoverPolicy.SIMULTANEOUS))

    notes = {a.name: a.notes for a in planned.agents}
    assert notes == {"dma-1": (), "dma-main": (SIMULTANEOUS_NOTE,), "dma-backup": (SIMULTANEOUS_NOTE,)}
    assert planned.notes == (SIMULTANEOUS_NOTE,)
    assert SIMULTANEOUS_NOTE not in planned.warnings


def test_no_pair_note_for_one_member_or_an_upload_only_run(service: UpgradeService) -> None:
    pair(service)

    assert not service.plan(spec("dma-main", policy="simultaneous")).notes
    assert not service.plan(spec("dma-main", "dma-backup", policy="simultaneous", upload_only=True)).notes


def test_backup_first_with_auto_start_off_notes_the_manual_start_the_backup_switch_over_waits_for(
        service: UpgradeService) -> None:
    pair(service)

    planned = service.plan(spec("dma-main", "dma-backup", policy="backup-first",
                                overrides=OptionOverrides(auto_start=False)))

    notes = {a.name: a.notes for a in planned.agents}
    assert notes == {"dma-main": (), "dma-backup": (auto_start_note("dma-backup"),)}
    assert planned.notes == (auto_start_note("dma-backup"),)


def test_switch_back_with_auto_start_off_notes_the_manual_start_of_both_members(service: UpgradeService) -> None:
    pair(service)

    planned = service.plan(spec("dma-main", "dma-backup", policy="backup-first-switch-back",
                                overrides=OptionOverrides(auto_start=False)))

    assert {a.name: a.notes for a in planned.agents} == {"dma-main": (auto_start_note("dma-main"),),
                                                         "dma-backup": (auto_start_note("dma-backup"),)}
    assert planned.notes == (auto_start_note("dma-main"), auto_start_note("dma-backup"))


def test_no_manual_start_note_with_auto_start_on_or_for_a_member_upgraded_alone(service: UpgradeService) -> None:
    pair(service)

    assert not service.plan(spec("dma-main", "dma-backup", policy="backup-first-switch-back")).notes
    assert not service.plan(spec("dma-backup", policy="backup-first", allow_partial_pair=True,
                                 overrides=OptionOverrides(auto_start=False))).notes


def test_a_stored_rollout_planned_without_the_new_fields_still_decodes(service: UpgradeService) -> None:
    pair(service)
    planned = service.plan(spec("dma-main", "dma-backup", policy="simultaneous"))
    codec = default_codec()
    event_type, version, payload = codec.encode(planned)
    older = json.loads(payload)
    del older["allow_partial_pair"], older["notes"]
    for agent in older["agents"]:
        del agent["notes"]

    decoded = codec.decode(event_type, version, json.dumps(older))

    assert isinstance(decoded, RolloutPlanned)
    assert not decoded.allow_partial_pair and decoded.notes == () and all(a.notes == () for a in decoded.agents)
