"""Property tests: random plans and random command sequences against a store-backed ``AgentUpgrade``.

Each command is run the way the engine runs it: load the upgrade from its stream (``read_stream`` +
``fold``), decide, append the decided events at ``expected_version = upgrade.version``, then apply
them to a live aggregate kept alongside. After every command:

(a) every state reached is an ``UpgradeState`` and every change of state is a (source, trigger, dest)
    the transitions table allows for that plan;
(b) a refused command raises ``InvalidTransition`` and appends nothing;
(c) folding the stored events gives the live aggregate, fact for fact;
(d) Completed is only reached once every planned step succeeded.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from hypothesis import HealthCheck, currently_in_test_context, given, settings
from hypothesis import event as hypothesis_event
from hypothesis import note as hypothesis_note
from hypothesis import strategies as st

from dma_upgrade.adapters.clock import SystemClock
from dma_upgrade.adapters.memory.event_store import InMemoryEventStore
from dma_upgrade.adapters.sql.database import create_db_engine, migrate
from dma_upgrade.adapters.sql.event_store import SqlEventStore
from dma_upgrade.engine.agent_upgrade import AgentUpgrade, upgrade_stream_id
from dma_upgrade.engine.catalog import default_codec
from dma_upgrade.engine.errors import InvalidTransition
from dma_upgrade.engine.events import Event, NewEvent
from dma_upgrade.engine.ports import EventStore
from dma_upgrade.engine.upgrade_events import (
    AgentUpgradeCancelled,
    AgentUpgradeCompleted,
    AgentUpgradeFailed,
    AgentUpgradePlan,
    AgentUpgradeRetried,
    AgentUpgradeScheduled,
    Step,
    StepStarted,
    StepSucceeded,
    UpgradeOptions,
)
from dma_upgrade.engine.upgrade_machine import (
    RESUMABLE_STATES,
    TRANSITIONS,
    MachineFlags,
    UpgradeState,
    next_state,
)

S = UpgradeState
MAX_COMMANDS = 40

# -- plans -------------------------------------------------------------------------------------

ALL_PLANS: list[AgentUpgradePlan] = [
    AgentUpgradePlan(options=UpgradeOptions(stop_snmp=stop_snmp, reboot=reboot, auto_start=auto_start),
                     switch_over=switch_over, upload_only=upload_only)
    for stop_snmp, reboot, auto_start, switch_over, upload_only in itertools.product([True, False], repeat=5)
]
"""Every combination of the options that shape an upgrade (32 plans)."""

plans = st.sampled_from([p for p in ALL_PLANS for _ in range(1 if p.upload_only else 3)])
"""Every plan, upload-only ones less often (they are one step long)."""


def plan_id(plan: AgentUpgradePlan) -> str:
    o = plan.options
    return (f"snmp={int(o.stop_snmp)},reboot={int(o.reboot)},auto={int(o.auto_start)},"
            f"switch={int(plan.switch_over)},upload_only={int(plan.upload_only)}")


def flags_of(plan: AgentUpgradePlan) -> MachineFlags:
    return MachineFlags(stops_snmp=plan.options.stop_snmp, switches_over=plan.switch_over,
                        reboots=plan.options.reboot, upload_only=plan.upload_only)


# -- commands ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class StartStep:
    step: Step

    def __call__(self, u: AgentUpgrade) -> list[Event]:
        return u.start_step(self.step)


@dataclass(frozen=True)
class FinishStep:
    step: Step

    def __call__(self, u: AgentUpgrade) -> list[Event]:
        return u.finish_step(self.step, "10.4.0.0-14000" if self.step == Step.INSTALL else None)


@dataclass(frozen=True)
class FailAttempt:
    step: Step

    def __call__(self, u: AgentUpgrade) -> list[Event]:
        return u.fail_attempt(self.step, f"{self.step.value} attempt failed")


@dataclass(frozen=True)
class ReportPhase:
    index: int
    count: int

    def __call__(self, u: AgentUpgrade) -> list[Event]:
        return u.report_phase(f"phase {self.index}", self.index, self.count)


@dataclass(frozen=True)
class Complete:
    def __call__(self, u: AgentUpgrade) -> list[Event]:
        return u.complete()


@dataclass(frozen=True)
class Fail:
    def __call__(self, u: AgentUpgrade) -> list[Event]:
        return u.fail("gave up")


@dataclass(frozen=True)
class Retry:
    def __call__(self, u: AgentUpgrade) -> list[Event]:
        return u.retry()


@dataclass(frozen=True)
class Cancel:
    def __call__(self, u: AgentUpgrade) -> list[Event]:
        return u.cancel("cancelled")


@dataclass(frozen=True)
class Reschedule:
    def __call__(self, u: AgentUpgrade) -> list[Event]:
        assert u.scheduled is not None
        return u.schedule(u.scheduled)


@dataclass(frozen=True)
class Advance:
    """What a driver would do next: retry, finish the running step, start the next one, or complete.

    Mixed in so that random sequences also get deep into every plan, not only refused at its start.
    """

    def __call__(self, u: AgentUpgrade) -> list[Event]:
        if u.state == S.FAILED:
            return u.retry()
        if u.step_in_progress is not None:
            return u.finish_step(u.step_in_progress)
        if u.next_step is not None:
            return u.start_step(u.next_step)
        return u.complete()


Command = (StartStep | FinishStep | FailAttempt | ReportPhase | Complete | Fail | Retry | Cancel
           | Reschedule | Advance)



def weighted(*choices: tuple[int, st.SearchStrategy[Command]]) -> st.SearchStrategy[Command]:
    """Draw from the strategies in proportion to their weights."""
    pool = [strategy for weight, strategy in choices for _ in range(weight)]
    return st.sampled_from(pool).flatmap(lambda strategy: strategy)


steps = st.sampled_from(Step)
report_phases = st.integers(min_value=1, max_value=5).flatmap(
    lambda count: st.builds(ReportPhase, st.integers(min_value=0, max_value=count - 1), st.just(count)))
commands: st.SearchStrategy[Command] = weighted(
    # Advance often enough to get deep into every plan; Cancel and Fail rarely enough not to end
    # most runs in their first few commands.
    (10, st.just(Advance())),
    (3, st.builds(StartStep, steps)),
    (3, st.builds(FinishStep, steps)),
    (2, st.builds(FailAttempt, steps)),
    (1, report_phases),
    (1, st.just(Complete())),
    (1, st.just(Fail())),
    (1, st.just(Retry())),
    (1, st.just(Cancel())),
    (1, st.just(Reschedule())),
)
command_lists = st.integers(min_value=0, max_value=MAX_COMMANDS).flatmap(
    lambda n: st.lists(commands, min_size=n, max_size=n))
"""Up to MAX_COMMANDS commands, every length as likely (plain ``st.lists`` averages about five)."""


# -- the oracles -------------------------------------------------------------------------------


def table_allows(source: UpgradeState, trigger: str, dest: UpgradeState, flags: MachineFlags,
                 resume_state: UpgradeState | None) -> bool:
    """Read the TRANSITIONS rows directly (not through the machine): is this move in the table?"""
    model = {"stops_snmp": flags.stops_snmp, "switches_over": flags.switches_over, "reboots": flags.reboots,
             "upload_only": flags.upload_only, "legacy_switch_first": flags.legacy_switch_first,
             **{f"resumes_to_{s.value}": s == resume_state for s in RESUMABLE_STATES}}
    for row in TRANSITIONS:
        sources = row["source"] if isinstance(row["source"], list) else [row["source"]]
        if (row["trigger"] == trigger and source.value in sources and row["dest"] == dest.value
                and all(model[c] for c in row.get("conditions", []))
                and not any(model[c] for c in row.get("unless", []))):
            return True
    return False


def trigger_of(event_: Event) -> str | None:
    """The table trigger an event can fire (steps fire the trigger named like them, if any)."""
    match event_:
        case StepStarted(step=step) | StepSucceeded(step=step):
            return step.value
        case AgentUpgradeCompleted():
            return "complete"
        case AgentUpgradeFailed():
            return "fail"
        case AgentUpgradeRetried():
            return "retry"
        case AgentUpgradeCancelled():
            return "cancel"
    return None


NAMED_FACTS = {"state", "version", "done_steps", "step_in_progress", "attempts", "last_error",
               "resume_state", "manual_start_needed"}


def facts(u: AgentUpgrade) -> dict[str, Any]:
    """Everything the fold decides (state, version, done_steps, step_in_progress, attempts, last_error,
    resume_state, manual_start_needed, and whatever else it keeps), as a deep copy."""
    return copy.deepcopy(vars(u))


def expected_to_be_accepted(command: Command, u: AgentUpgrade) -> bool:
    """The rules of the aggregate, written out plainly, for the upgrade ``u`` before the command."""
    active = u.state not in (S.COMPLETED, S.CANCELLED, S.FAILED)
    idle = u.step_in_progress is None
    match command:
        case StartStep(step=step):
            return active and idle and step == u.next_step
        case FinishStep(step=step) | FailAttempt(step=step):
            return u.step_in_progress == step
        case ReportPhase():
            return u.state == S.INSTALLING and u.step_in_progress == Step.INSTALL
        case Complete():
            return active and idle and u.next_step is None
        case Fail():
            return active
        case Retry():
            return u.state in (S.FAILED, S.CANCELLED)  # a cancelled one is taken up again when its rollout continues
        case Cancel():
            return u.state == S.FAILED or (u.state in (S.SCHEDULED, S.UPLOADED, S.SNMP_STOPPED) and idle)
        case Reschedule():
            return False
        case Advance():
            return u.state not in (S.COMPLETED, S.CANCELLED)
    raise AssertionError(command)


# -- the harness -------------------------------------------------------------------------------


def note(text: str) -> None:
    """Shown with a falsifying example (the harness also runs outside Hypothesis)."""
    if currently_in_test_context():
        hypothesis_note(text)


def event(label: str) -> None:
    """Counted in ``--hypothesis-show-statistics``."""
    if currently_in_test_context():
        hypothesis_event(label)


class Run:
    """One upgrade on one store, driven command by command, checking (a)-(d) as it goes."""

    def __init__(self, store: EventStore, plan: AgentUpgradePlan) -> None:
        self.store = store
        self.plan = plan
        self.flags = flags_of(plan)
        self.upgrade_id = uuid4()
        self.stream_id = upgrade_stream_id(self.upgrade_id)
        self.live = AgentUpgrade()
        self.reached: list[UpgradeState] = [self.live.state]
        assert facts(self.live).keys() >= NAMED_FACTS
        scheduled = AgentUpgradeScheduled(upgrade_id=self.upgrade_id, agent="dma-01",
                                          package_sha256="ab" * 32, target_version="10.4.0.0-14000",
                                          plan=plan)
        self._append(0, self.live.schedule(scheduled))

    def load(self) -> AgentUpgrade:
        return AgentUpgrade.fold(e.event for e in self.store.read_stream(self.stream_id))

    def execute(self, command: Command) -> bool:
        """Run one command; True if it was accepted (and stored), False if it was refused."""
        loaded = self.load()
        before = facts(loaded)
        head = self.store.head_position()
        try:
            decided = command(loaded)
        except InvalidTransition as error:
            # (b) refused: nothing appended, nothing changed
            note(f"{command!r} refused in {before['state']}: {error}")
            event(f"refused {type(command).__name__}")
            assert str(before["state"]) in str(error) or before["scheduled"] is None
            assert facts(loaded) == before, "a refused decision mutated the aggregate"
            assert self.store.head_position() == head
            assert facts(self.load()) == before
            assert facts(self.live) == before
            return False
        note(f"{command!r} in {before['state']} -> {[type(e).__name__ for e in decided]}")
        event(f"accepted {type(command).__name__}")
        assert decided, "an accepted command decided no events"
        assert facts(loaded) == before, "a decision mutated the aggregate"
        self._append(loaded.version, decided)
        return True

    def _append(self, expected_version: int, decided: list[Event]) -> None:
        result = self.store.append(self.stream_id, expected_version,
                                   [NewEvent(event_id=uuid4(), event=e) for e in decided])
        # The stream length, not ``result.stream_version``: InMemoryEventStore reports a wrong
        # stream_version for appends to an existing stream (it counts the new events twice).
        assert len(self.store.read_stream(self.stream_id)) == expected_version + len(decided)
        assert not result.duplicate
        assert len(result.positions) == len(decided)
        for decided_event in decided:
            self._apply_live(decided_event)
        # (c) the stored history folds to exactly the live aggregate
        assert facts(self.load()) == facts(self.live)

    def _apply_live(self, decided_event: Event) -> None:
        source, resume = self.live.state, self.live.resume_state
        self.live.apply(decided_event)
        dest = self.live.state
        # (a) states are UpgradeStates, and every change of state is a move of the table
        assert isinstance(dest, UpgradeState)
        self.reached.append(dest)
        if dest != source:
            trigger = trigger_of(decided_event)
            assert trigger is not None, f"{type(decided_event).__name__} moved {source} -> {dest}"
            assert next_state(source, trigger, self.flags, resume) == dest
            assert table_allows(source, trigger, dest, self.flags, resume), (source, trigger, dest)
            event(f"moved {source} -{trigger}-> {dest}")
        match decided_event:
            case AgentUpgradeCompleted():
                assert dest == S.COMPLETED
            case AgentUpgradeFailed():
                assert (dest, self.live.resume_state) == (S.FAILED, source)
            case AgentUpgradeRetried():
                assert dest == resume
            case AgentUpgradeCancelled():
                assert dest == S.CANCELLED
        if dest == S.COMPLETED:
            # (d) only after every planned step succeeded, each once, in plan order
            assert source != S.COMPLETED
            assert self.live.done_steps == list(self.plan.steps)
            assert self.live.step_in_progress is None
            succeeded = [e.event.step for e in self.store.read_stream(self.stream_id)
                         if isinstance(e.event, StepSucceeded)]
            assert succeeded == list(self.plan.steps)
            assert self.live.manual_start_needed == (
                not self.plan.options.auto_start and not self.plan.upload_only)


def run_commands(store: EventStore, plan: AgentUpgradePlan, sequence: list[Command]) -> Run:
    run = Run(store, plan)
    for command in sequence:
        run.execute(command)
    event(f"ended in {run.live.state}")
    return run


def memory_store() -> InMemoryEventStore:
    return InMemoryEventStore(default_codec(), SystemClock())


# -- the properties ----------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(plan=plans, sequence=command_lists)
def test_random_commands_keep_the_stored_upgrade_consistent_with_the_table(
        plan: AgentUpgradePlan, sequence: list[Command]) -> None:
    """Any command sequence, on any plan: moves follow the table, refusals store nothing, the stored
    events fold to the live upgrade, and Completed comes only after every planned step."""
    run_commands(memory_store(), plan, sequence)


@settings(max_examples=200, deadline=None)
@given(plan=plans, sequence=command_lists)
def test_a_command_is_refused_exactly_when_the_upgrade_rules_refuse_it(
        plan: AgentUpgradePlan, sequence: list[Command]) -> None:
    """The aggregate accepts a command iff the plainly written rules accept it (so properties (a)-(d)
    are not met by refusing everything)."""
    run = Run(memory_store(), plan)
    for command in sequence:
        expected = expected_to_be_accepted(command, run.live)
        assert run.execute(command) == expected, (command, facts(run.live))


@pytest.mark.parametrize("plan", ALL_PLANS, ids=plan_id)
def test_every_plan_reaches_completed_through_the_store_when_driven_forward(plan: AgentUpgradePlan) -> None:
    """Driving each plan forward (with a failed attempt, a failure and a retry on the way) completes it."""
    run = Run(memory_store(), plan)
    assert run.execute(StartStep(Step.UPLOAD))
    assert run.execute(FailAttempt(Step.UPLOAD))
    assert run.execute(Fail())
    assert run.execute(Retry())
    for _ in range(2 * len(plan.steps) + 1):
        assert run.execute(Advance())
    assert run.live.state == S.COMPLETED
    assert not run.execute(Advance())
    states = list(dict.fromkeys(run.reached))
    assert states[0] == S.SCHEDULED and states[-1] == S.COMPLETED


# -- the same over SQLite ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def sqlite_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SqlEventStore]:
    """One migrated SQLite file for the module; every example uses a stream of its own."""
    path: Path = tmp_path_factory.mktemp("properties") / "store.db"
    engine = create_db_engine(f"sqlite:///{path}")
    migrate(engine)
    yield SqlEventStore(engine, default_codec(), SystemClock())
    engine.dispose()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=plans, sequence=command_lists)
def test_random_commands_keep_the_sqlite_stored_upgrade_consistent_with_the_table(
        sqlite_store: SqlEventStore, plan: AgentUpgradePlan, sequence: list[Command]) -> None:
    """The same properties hold when the upgrade is stored in SQLite and read back from it."""
    run_commands(sqlite_store, plan, sequence)
