"""An exhaustive checker of the engine's decisions: every interleaving of a small cluster, every fault.

The model is a failover pair plus two standalone agents, upgraded by one rollout planned by the real
``plan_rollout`` and driven by the real decisions (``engine/decisions.py``) over the real aggregates. Around
them it models what the runtime and the world may do, in any order:

- the engine's runner looks at the rollout (start, retries, cancellations, new agents, its conclusion);
- each upgrade's driver carries out its next action; a command reaches the agent, which applies it and
  answers, refuses it (not applied), or does not answer (having applied it, or not);
- the engine crashes at any moment (its memory is lost, it resumes from the events alone);
- an operator pauses, resumes, cancels, retries or continues the rollout, starts an agent left stopped, or resolves a
  step in doubt (truthfully).

Faults, crashes and operator actions each have a budget per run, so the state space is finite; states
are deduplicated by a canonical key (the two standalone agents are interchangeable). In every state it
checks the safety invariants of ``docs/invariants.md``; afterwards, that from every state a run where
agents answer reaches an end (liveness). A violation comes with the shortest trace that leads to it.
"""

from __future__ import annotations

import copy
import itertools
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from uuid import UUID

from dma_upgrade.engine import decisions
from dma_upgrade.engine.agent_events import AgentStartedManually, FailoverRole
from dma_upgrade.engine.agent_upgrade import AgentUpgrade
from dma_upgrade.engine.errors import InvalidTransition
from dma_upgrade.engine.events import Event
from dma_upgrade.engine.inventory import AgentRecord, apply_agent_event
from dma_upgrade.engine.packages import PackageKind, PackageManifest
from dma_upgrade.engine.planning import RolloutRequest, plan_rollout
from dma_upgrade.engine.ports import StepOutcome, StepStatus
from dma_upgrade.engine.rollout import Rollout, RolloutState
from dma_upgrade.engine.rollout_events import FailoverPolicy, RolloutPlanned, StepPolicy
from dma_upgrade.engine.upgrade_events import AgentUpgradeScheduled, Step, StepOrder, StepStarted, UpgradeOptions
from dma_upgrade.engine.upgrade_machine import STOPPED_STATES

OLD_VERSION = "10.4.0.0-14000"
NEW_VERSION = "10.5.0.0-15000"
MAIN, BACKUP, SOLO_1, SOLO_2 = "dma-main", "dma-backup", "dma-solo-1", "dma-solo-2"
SOLOS = (SOLO_1, SOLO_2)
SWITCHING_POLICIES = (FailoverPolicy.BACKUP_FIRST, FailoverPolicy.BACKUP_FIRST_SWITCH_BACK)
T0 = datetime(2026, 1, 1, tzinfo=UTC)
POLICY = StepPolicy(retry_budget=1, backoff_seconds=5.0)

Decide = Callable[[AgentUpgrade, decisions.UpgradeFacts], decisions.UpgradeAction]


@dataclass(frozen=True)
class Configuration:
    """One configuration to explore: the policy and the options that shape a pair's upgrade."""

    policy: FailoverPolicy
    reboot: bool
    auto_start: bool
    default_policy: FailoverPolicy = FailoverPolicy.SIMULTANEOUS
    """What the ``default`` policy resolves to (the setting)."""

    @property
    def name(self) -> str:
        policy = self.policy.value + (f"({self.default_policy.value})" if self.policy is FailoverPolicy.DEFAULT else "")
        return f"{policy} reboot={'on' if self.reboot else 'off'} auto-start={'on' if self.auto_start else 'off'}"

    @property
    def resolved_policy(self) -> FailoverPolicy:
        return self.default_policy if self.policy is FailoverPolicy.DEFAULT else self.policy


ALL_CONFIGURATIONS = tuple(Configuration(policy, reboot, auto_start)
                           for policy in (FailoverPolicy.DEFAULT, FailoverPolicy.SIMULTANEOUS, *SWITCHING_POLICIES)
                           for reboot in (False, True) for auto_start in (True, False))
"""Each failover policy (``default`` resolved by the documented setting), reboot on/off, auto start on/off."""


@dataclass(frozen=True)
class Budgets:
    """How many faults (agent failures or silences), engine crashes and operator actions one run may have."""

    faults: int = 2
    crashes: int = 1
    operator: int = 1


@dataclass(frozen=True)
class Core:
    """The decision core under check: the real one by default; a seeded fault replaces a part of it."""

    decide: Decide = decisions.next_action
    plan_order: StepOrder = StepOrder.SWITCH_WHEN_RUNNING


@dataclass
class _Agent:
    """One agent as the world knows it (not as the engine believes)."""

    new_version: bool = False
    running: bool = True
    rebooted: bool = False
    applied: frozenset[str] = frozenset()
    refused: frozenset[str] = frozenset()
    applications: tuple[tuple[Step, int], ...] = ()

    def key(self) -> tuple[object, ...]:
        return (self.new_version, self.running, self.rebooted, self.applied, self.refused, self.applications)

    def times_applied(self, step: Step) -> int:
        return dict(self.applications).get(step, 0)


@dataclass
class _State:
    rollout: Rollout
    upgrades: dict[str, AgentUpgrade]
    records: dict[str, AgentRecord]
    world: dict[str, _Agent]
    active: str
    driving: frozenset[str] = frozenset()
    fresh: frozenset[str] = frozenset()
    faults: int = 0
    crashes: int = 0
    operator: int = 0

    def clone(self) -> _State:
        other = copy.copy(self)
        other.rollout = copy.copy(self.rollout)
        other.rollout.retry_requests = dict(self.rollout.retry_requests)
        other.upgrades = dict(self.upgrades)
        other.records = dict(self.records)
        other.world = dict(self.world)
        return other


@dataclass(frozen=True)
class Violation:
    """An invariant that does not hold, and the shortest trace (the events and happenings) that breaks it."""

    invariant: str
    detail: str
    trace: tuple[str, ...]


@dataclass
class Verdict:
    """What exploring one configuration found."""

    configuration: Configuration
    states: int = 0
    transitions: int = 0
    violations: list[Violation] = field(default_factory=list)

    @property
    def holds(self) -> bool:
        return not self.violations


class _Broken(Exception):
    def __init__(self, invariant: str, detail: str) -> None:
        super().__init__(detail)
        self.invariant = invariant
        self.detail = detail
        self.move: str | None = None
        """The move that broke it, when it broke while a move was being made."""


def _clone_upgrade(upgrade: AgentUpgrade) -> AgentUpgrade:
    other = copy.copy(upgrade)
    other.done_steps = list(upgrade.done_steps)
    other.attempts = dict(upgrade.attempts)
    other.attempts_this_round = dict(upgrade.attempts_this_round)
    return other


def _upgrade_key(upgrade: AgentUpgrade) -> tuple[object, ...]:
    return (upgrade.state, tuple(upgrade.done_steps), upgrade.step_in_progress,
            tuple(sorted(upgrade.attempts.items())), tuple(sorted(upgrade.attempts_this_round.items())),
            upgrade.waiting_until is not None, upgrade.in_doubt, upgrade.status_learned, upgrade.resume_state,
            upgrade.retries, upgrade.awaiting_manual_start, upgrade.manual_start_seen, upgrade.version_after)


class Explorer:
    """Breadth-first exploration of one configuration (so the first violation found has a shortest trace)."""

    def __init__(self, configuration: Configuration, budgets: Budgets = Budgets(), core: Core = Core(),
                 max_concurrent: int = 2, max_states: int = 2_000_000) -> None:
        self.configuration = configuration
        self.max_concurrent = max_concurrent
        self.budgets = budgets
        self.core = core
        self.max_states = max_states
        self.plan = self._plan()
        self._by_name = {agent.name: agent for agent in self.plan.agents}

    # -- the set-up ----------------------------------------------------------------------------

    def _plan(self) -> RolloutPlanned:
        cluster = "model"
        inventory = [
            AgentRecord(name=MAIN, address="10.0.0.1", cluster=cluster, version=OLD_VERSION,
                        failover_partner=BACKUP, failover_role=FailoverRole.MAIN),
            AgentRecord(name=BACKUP, address="10.0.0.2", cluster=cluster, version=OLD_VERSION,
                        failover_partner=MAIN, failover_role=FailoverRole.BACKUP),
            *[AgentRecord(name=name, address=f"10.0.0.{3 + i}", cluster=cluster, version=OLD_VERSION)
              for i, name in enumerate(SOLOS)],
        ]
        manifest = PackageManifest(version=NEW_VERSION.split("-")[0], build=int(NEW_VERSION.split("-")[1]),
                                   kind=PackageKind.FULL)
        request = RolloutRequest(package_sha256="0" * 64, manifest=manifest, agents=inventory, inventory=inventory,
                                 options=UpgradeOptions(reboot=self.configuration.reboot,
                                                        auto_start=self.configuration.auto_start),
                                 failover_policy=self.configuration.resolved_policy, delayed_start_seconds=60,
                                 step_policy=POLICY, max_concurrent=str(self.max_concurrent))
        ids = (UUID(int=n) for n in itertools.count(1))
        planned = plan_rollout(request, next(ids), lambda: next(ids))
        agents = tuple(a.model_copy(update={"plan": a.plan.model_copy(update={"step_order": self.core.plan_order})})
                       for a in planned.agents)
        return planned.model_copy(update={"agents": agents})

    def initial(self) -> _State:
        rollout = Rollout.fold([self.plan])
        upgrades = {}
        records = {}
        for agent in self.plan.agents:
            upgrade = AgentUpgrade()
            upgrade.apply(AgentUpgradeScheduled(upgrade_id=agent.upgrade_id, rollout_id=self.plan.rollout_id,
                                                agent=agent.name, package_sha256=self.plan.package_sha256,
                                                target_version=self.plan.package_version, plan=agent.plan))
            upgrades[agent.name] = upgrade
            records[agent.name] = AgentRecord(name=agent.name, address=agent.address, cluster=agent.cluster,
                                              version=agent.current_version)
        return _State(rollout=rollout, upgrades=upgrades, records=records,
                      world={agent.name: _Agent() for agent in self.plan.agents}, active=MAIN)

    # -- the key -------------------------------------------------------------------------------

    def key(self, state: _State) -> tuple[object, ...]:
        def of(name: str) -> tuple[object, ...]:
            record = state.records[name]
            return (_upgrade_key(state.upgrades[name]), record.stopped_by_upgrade is not None,
                    record.started_by_hand_after is not None, record.version, state.world[name].key(),
                    state.rollout.retry_requests.get(name, 0), name in state.driving, name in state.fresh)

        solos = tuple(sorted((of(name) for name in SOLOS), key=hash))  # interchangeable: either order is one state
        return (state.rollout.state, of(MAIN), of(BACKUP), solos, state.active, state.faults, state.crashes,
                state.operator)

    # -- the invariants ------------------------------------------------------------------------

    def check(self, state: _State) -> None:
        """The safety invariants every reachable state keeps (raise ``_Broken``)."""
        policy = self.configuration.resolved_policy
        if policy in SWITCHING_POLICIES and not state.world[state.active].running:
            raise _Broken("2 the pair's active member is running",
                          f"{state.active} is the pair's active member and is not running")
        for name, agent in state.world.items():
            for step, times in agent.applications:
                if times > 1:
                    raise _Broken("5 each agent operation is applied once",
                                  f"{name} applied {step.value} {times} times")

    def _apply_on_agent(self, state: _State, name: str, step: Step, key: str) -> None:
        """The agent applies ``key`` (once: a key it applied already is not applied again)."""
        agent = state.world[name]
        if key in agent.applied:
            return
        counts = dict(agent.applications)
        counts[step] = counts.get(step, 0) + 1
        agent = replace(agent, applied=agent.applied | {key}, applications=tuple(sorted(counts.items())))
        if step is Step.INSTALL:
            agent = replace(agent, new_version=True, running=False, rebooted=False)
        elif step is Step.REBOOT:
            agent = replace(agent, rebooted=True, running=False)
        elif step is Step.START:
            agent = replace(agent, running=True)
        elif step is Step.SWITCH_OVER:
            plan = state.upgrades[name].plan
            if not (agent.running and agent.new_version and (agent.rebooted or not plan.options.reboot)):
                raise _Broken("1 a switch-over moves activity only to an agent that runs the new version",
                              f"switch-over to {name}: running={agent.running}, new version={agent.new_version}, "
                              f"rebooted={agent.rebooted} (reboot {'on' if plan.options.reboot else 'off'})")
            state.active = name
        state.world[name] = agent

    # -- the moves -----------------------------------------------------------------------------

    def moves(self, state: _State) -> Iterator[tuple[str, _State, bool]]:
        """Every next state: (what happened, the state, whether it is a move of a run where agents answer).

        The rollout's runner looks after every move (``settle``): when it looks only delays what it starts,
        and starting an agent later never makes a pair less safe."""
        moves = [*self._runner(state),  # only where no move came before: the planned rollout's start
                 *(move for name in sorted(state.driving) for move in self._driver(state, name)),
                 *self._operator(state)]
        if state.crashes < self.budgets.crashes and (state.driving or state.fresh):
            crashed = state.clone()
            crashed.driving, crashed.fresh, crashed.crashes = frozenset(), frozenset(), state.crashes + 1
            moves.append(("the engine crashes (its memory is lost; it restarts from the events)", crashed, False))
        for label, after, good in moves:
            yield self._settle(label, after, good)

    def _settle(self, label: str, state: _State, good: bool) -> tuple[str, _State, bool]:
        """Let the runner look until it has nothing more to do; its moves join the label."""
        while True:
            looked = next(self._runner(state), None)
            if looked is None:
                return label, state, good
            what, state, _ = looked
            label = f"{label}; {what}"

    def _append(self, state: _State, name: str, events: Sequence[Event]) -> _State:
        after = state.clone()
        upgrade = _clone_upgrade(state.upgrades[name])
        for event in events:
            upgrade.apply(event)
        after.upgrades[name] = upgrade
        return after

    def _append_rollout(self, state: _State, events: Sequence[Event]) -> _State:
        after = state.clone()
        for event in events:
            after.rollout.apply(event)
        return after

    def _append_agent(self, state: _State, name: str, events: Sequence[Event]) -> _State:
        record = copy.copy(state.records[name])
        record.version_history = list(record.version_history)
        for event in events:
            applied = apply_agent_event(record, event)
            assert applied is not None
            record = applied
        after = state.clone()
        after.records[name] = record
        return after

    def _runner(self, state: _State) -> Iterator[tuple[str, _State, bool]]:
        """What one look of the rollout's runner does next, if anything (after a crash it starts again)."""
        rollout = state.rollout
        if rollout.state is RolloutState.PLANNED:
            yield _label("rollout", rollout.start()), self._append_rollout(state, rollout.start()), True
            return
        for name, events in {**decisions.retries(rollout, state.upgrades, state.driving),
                             **decisions.cancellations(rollout, state.upgrades, state.driving)}.items():
            yield _label(name, events), self._append(state, name, events), True
            return
        ready = decisions.agents_to_start(rollout, self.plan.agents, state.upgrades, state.driving,
                                          self.plan.max_concurrent - len(state.driving),
                                          decisions.failed_count(state.upgrades))
        if ready:
            after = state.clone()
            after.driving = state.driving | {a.name for a in ready}
            yield f"the runner starts driving {', '.join(a.name for a in ready)}", after, True
        elif not state.driving:
            events = decisions.conclusion(rollout, state.upgrades)
            if events:
                yield _label("rollout", events), self._append_rollout(state, events), True

    def _facts(self, state: _State, name: str) -> decisions.UpgradeFacts:
        return decisions.UpgradeFacts(now=T0, policy=POLICY, agent=state.records[name],
                                      cancelled=state.rollout.state is RolloutState.CANCELLED,
                                      intent_fresh=name in state.fresh)

    def _driver(self, state: _State, name: str) -> Iterator[tuple[str, _State, bool]]:
        upgrade = state.upgrades[name]
        action = self.core.decide(upgrade, self._facts(state, name))
        if isinstance(action, decisions.WaitUntil):  # time passes up to the timer; then the driver decides again
            facts = replace(self._facts(state, name), now=action.due)
            action = self.core.decide(upgrade, facts)
        match action:
            case decisions.Finished():
                after = state.clone()
                after.driving, after.fresh = state.driving - {name}, state.fresh - {name}
                yield f"{name}: its driver ends", after, True
            case decisions.Record(events=events):
                after = self._append(state, name, events)
                if any(isinstance(e, StepStarted) for e in events):  # the intent, then at once the command:
                    after.fresh = state.fresh | {name}  # a crash in between is a command the agent never got
                    sent = self.core.decide(after.upgrades[name], self._facts(after, name))
                    if isinstance(sent, decisions.Send):
                        for label, then, good in self._send(after, name, sent.step, sent.key):
                            yield f"{_label(name, events)}; {label}", then, good
                        return
                after.fresh = state.fresh - {name}
                yield _label(name, events), after, True
            case decisions.LeaveStopped():
                stopped = decisions.left_stopped(upgrade, state.records[name])
                yield _label(name, stopped, "agent"), self._append_agent(state, name, stopped), True
            case decisions.AwaitManualStart():
                return
            case decisions.Send(step=step, key=key):
                yield from self._send(state, name, step, key)
            case decisions.Ask(step=step, key=key):
                yield from self._ask(state, name, step, key)
            case decisions.WaitUntil():
                raise _Broken("5 every run ends", f"{name}: the driver waits again right after its timer")

    def _send(self, state: _State, name: str, step: Step, key: str) -> Iterator[tuple[str, _State, bool]]:
        upgrade = state.upgrades[name]
        if upgrade.step_in_progress is not step or key != upgrade.idempotency_key(step, upgrade.attempts[step]):
            raise _Broken("5 a step is sent only after its intent is recorded",
                          f"{name}: {step.value} sent under {key} without its StepStarted")
        sent = state.clone()
        sent.fresh = state.fresh - {name}
        label = f"{name}: {step.value} sent ({key.split(':', 1)[1]})"
        applied = sent.clone()
        try:
            self._apply_on_agent(applied, name, step, key)
        except _Broken as broken:
            broken.move = f"{label}; the agent applies it"
            raise
        outcome = StepOutcome(version_after=NEW_VERSION if step is Step.INSTALL else None)
        change = decisions.version_change(state.records[name], upgrade, step, outcome)
        recorded = self._append_agent(applied, name, change)
        events = decisions.answered(upgrade, step, outcome, NEW_VERSION)
        yield f"{label}; the agent applies it and answers; {_label(name, events)}", \
            self._append(recorded, name, events), True
        if state.faults < self.budgets.faults:
            if key not in state.world[name].applied:
                refusal = sent.clone()
                refusal.world[name] = replace(refusal.world[name], refused=refusal.world[name].refused | {key})
                refusal.faults += 1
                events = decisions.refused(upgrade, step, "the agent refused", POLICY, T0)
                yield f"{label}; the agent refuses it; {_label(name, events)}", self._append(refusal, name, events), \
                    False
            for silent, what in ((applied, "applies it"), (sent, "does not apply it")):
                events = decisions.unanswered(upgrade, step, "no answer")
                after = self._append(silent, name, events)
                after.faults = state.faults + 1
                yield f"{label}; the agent {what} and does not answer; {_label(name, events)}", after, False
        if state.crashes < self.budgets.crashes:
            for silent, what in ((applied, "applies it"), (sent, "does not apply it")):
                crashed = silent.clone()
                crashed.driving, crashed.fresh, crashed.crashes = frozenset(), frozenset(), state.crashes + 1
                yield f"{label}; the agent {what}; the engine crashes before the answer", crashed, False

    def _ask(self, state: _State, name: str, step: Step, key: str) -> Iterator[tuple[str, _State, bool]]:
        upgrade = state.upgrades[name]
        agent = state.world[name]
        status = (StepStatus.SUCCEEDED if key in agent.applied
                  else StepStatus.FAILED if key in agent.refused else StepStatus.UNKNOWN)
        events = decisions.learned(upgrade, step, status, POLICY, T0)
        yield f"{name}: asked about {key.split(':', 1)[1]}, the agent says {status.value}; {_label(name, events)}", \
            self._append(state, name, events), True
        if state.faults < self.budgets.faults:
            events = decisions.unanswered(upgrade, step, "cannot ask the agent")
            if events:
                after = self._append(state, name, events)
                after.faults += 1
                yield f"{name}: the agent cannot be asked; {_label(name, events)}", after, False

    def _operator(self, state: _State) -> Iterator[tuple[str, _State, bool]]:
        rollout = state.rollout
        for name in self._by_name:  # starting an agent left stopped: part of every run with Auto Start off
            record = state.records[name]
            if record.stopped_by_upgrade is not None:
                after = self._append_agent(state, name, [AgentStartedManually(upgrade_id=record.stopped_by_upgrade)])
                after.world[name] = replace(after.world[name], running=True)
                yield f"operator: starts {name} by hand", after, True
        if rollout.state is RolloutState.PAUSED:
            yield "operator: resumes the rollout", self._append_rollout(state, rollout.resume()), True
        if state.operator >= self.budgets.operator:
            return
        commands: list[tuple[str, Callable[[], list[Event]]]] = []
        if rollout.state is RolloutState.RUNNING:
            commands.append(("pauses", rollout.pause))
        if rollout.state in (RolloutState.PLANNED, RolloutState.RUNNING, RolloutState.PAUSED, RolloutState.FAILED):
            commands.append(("cancels", lambda: rollout.cancel("cancelled by the operator")))
        failed = decisions.failed_agents(rollout, state.upgrades)
        if rollout.state is RolloutState.FAILED and failed:
            commands.append(("retries the failed agents of", lambda: rollout.retry_failed(failed)))
        continued = _continued(state)
        if continued is not None:
            commands.append(("continues", lambda: rollout.continue_rollout(continued)))
        for verb, decide in commands:
            after = self._append_rollout(state, decide())
            after.operator += 1
            if verb == "cancels" and rollout.state in (RolloutState.PLANNED, RolloutState.FAILED):
                # the service winds up
                for name, events in decisions.cancellations(after.rollout, after.upgrades, ()).items():
                    after = self._append(after, name, events)
            yield f"operator: {verb} the rollout", after, False
        for name, upgrade in state.upgrades.items():
            if upgrade.in_doubt and upgrade.step_in_progress is not None:
                step = upgrade.step_in_progress
                truth = upgrade.idempotency_key(step, upgrade.attempts[step]) in state.world[name].applied
                events = upgrade.resolve_doubt(truth, NEW_VERSION if step is Step.INSTALL and truth else None)
                after = self._append(state, name, events)
                after.operator += 1
                verdict = "applied" if truth else "not applied"
                yield f"operator: resolves {name}'s {step.value} as {verdict}", after, False

    # -- the search ----------------------------------------------------------------------------

    def ended(self, state: _State) -> bool:
        """A run's end: the rollout ended (completed, cancelled, or failed for an operator), nothing driven."""
        return (state.rollout.state in (RolloutState.COMPLETED, RolloutState.CANCELLED, RolloutState.FAILED)
                and not state.driving and all(u.state in STOPPED_STATES or u.step_in_progress is None
                                              for u in state.upgrades.values()))

    def explore(self) -> Verdict:
        """Every reachable state: the safety invariants in each, then the liveness of every one."""
        verdict = Verdict(self.configuration)
        start = self.initial()
        keys: dict[tuple[object, ...], int] = {self.key(start): 0}
        parents: list[tuple[int, str]] = [(-1, "the rollout is planned")]
        good_edges: list[list[int]] = [[]]  # reversed: target -> sources, moves of runs where agents answer
        ended: list[bool] = [self.ended(start)]
        queue: deque[tuple[int, _State]] = deque([(0, start)])
        while queue:
            index, state = queue.popleft()
            try:
                moves = list(self.moves(state))
            except _Broken as broken:
                trace = self._trace(parents, index) + ((broken.move,) if broken.move else ())
                verdict.states = len(parents)
                verdict.violations.append(Violation(broken.invariant, broken.detail, trace))
                return verdict
            for label, after, good in moves:
                verdict.transitions += 1
                key = self.key(after)
                target = keys.get(key)
                if target is None:
                    target = keys[key] = len(parents)
                    parents.append((index, label))
                    good_edges.append([])
                    ended.append(self.ended(after))
                    try:
                        self.check(after)
                    except _Broken as broken:
                        verdict.states = len(parents)
                        verdict.violations.append(Violation(broken.invariant, broken.detail,
                                                            self._trace(parents, target)))
                        return verdict
                    if len(parents) > self.max_states:
                        raise RuntimeError(f"more than {self.max_states} states: raise the limit or lower the budgets")
                    queue.append((target, after))
                if good:
                    good_edges[target].append(index)
        verdict.states = len(parents)
        stuck = self._stuck(good_edges, ended)
        if stuck is not None:
            verdict.violations.append(Violation("5 every run ends", "from here no run where agents answer ends",
                                                self._trace(parents, stuck)))
        return verdict

    @staticmethod
    def _stuck(good_edges: list[list[int]], ended: list[bool]) -> int | None:
        """The first state (in search order) from which no run of good moves reaches an end, if any."""
        reaches = list(ended)
        queue = deque(i for i, e in enumerate(ended) if e)
        while queue:
            for source in good_edges[queue.popleft()]:
                if not reaches[source]:
                    reaches[source] = True
                    queue.append(source)
        return next((i for i, ok in enumerate(reaches) if not ok), None)

    @staticmethod
    def _trace(parents: list[tuple[int, str]], index: int) -> tuple[str, ...]:
        trace = []
        while index >= 0:
            parent, label = parents[index]
            trace.append(label)
            index = parent
        return tuple(reversed(trace))


def _label(name: str, events: Sequence[Event], stream: str = "upgrade") -> str:
    shown = ", ".join(_event_text(event) for event in events) or "nothing"
    return f"{name}: {shown}" if name == "rollout" else f"{name} ({stream}): {shown}"


def _event_text(event: Event) -> str:
    fields = {k: v for k, v in event.model_dump(mode="json").items()
              if k in ("step", "attempt", "status", "applied", "state", "reason", "agent", "resume_state")}
    inner = ", ".join(f"{k}={v}" for k, v in fields.items())
    return f"{type(event).__name__}({inner})"


# -- seeded faults: broken cores the checker must catch ---------------------------------------------------


def _resend_on_resume(upgrade: AgentUpgrade, facts: decisions.UpgradeFacts) -> decisions.UpgradeAction:
    """A resumed engine that fails the step it finds in flight and sends a new attempt, without asking."""
    action = decisions.next_action(upgrade, facts)
    if isinstance(action, decisions.Ask) and not upgrade.in_doubt:
        return decisions.Record(tuple(upgrade.fail_attempt(action.step, "resumed: sent again")))
    return action


def _continued(state: _State) -> tuple[str, ...] | None:
    """The agents an operator's ``continue`` takes up again, or None when the rollout may not be continued (it
    runs, is driven, or every agent completed)."""
    if state.driving:
        return None
    try:
        return decisions.continued_agents(state.rollout, state.upgrades)
    except InvalidTransition:
        return None


def _retry_after_timeout(upgrade: AgentUpgrade, facts: decisions.UpgradeFacts) -> decisions.UpgradeAction:
    """A timeout treated as a failed attempt: the next attempt is sent without asking about the last."""
    action = decisions.next_action(upgrade, facts)
    if isinstance(action, decisions.Ask) and upgrade.in_doubt:
        return decisions.Record(tuple(upgrade.fail_attempt(action.step, "no answer: retried")))
    return action


SEEDED_FAULTS: dict[str, tuple[Core, Configuration]] = {
    "switch-before-start": (Core(plan_order=StepOrder.LEGACY_SWITCH_BEFORE_REBOOT),
                            Configuration(FailoverPolicy.BACKUP_FIRST, reboot=False, auto_start=True)),
    "reboot-after-switch": (Core(plan_order=StepOrder.LEGACY_SWITCH_BEFORE_REBOOT),
                            Configuration(FailoverPolicy.BACKUP_FIRST, reboot=True, auto_start=True)),
    "resume-without-asking": (Core(decide=_resend_on_resume),
                              Configuration(FailoverPolicy.SIMULTANEOUS, reboot=False, auto_start=True)),
    "retry-after-timeout-without-asking": (Core(decide=_retry_after_timeout),
                                           Configuration(FailoverPolicy.SIMULTANEOUS, reboot=False, auto_start=True)),
}
"""Broken decision cores (each with a configuration that exercises it) the checker must reject:
the order plans had before the invariants (switch-over before the start, reboot after the switch-over), a
resume that re-sends without asking ``step_status``, and a retry after a timeout that does not ask first."""


def explore_all(configurations: Sequence[Configuration] = ALL_CONFIGURATIONS, budgets: Budgets = Budgets(),
                core: Core = Core()) -> list[Verdict]:
    """Explore each configuration with the same core and budgets."""
    return [Explorer(configuration, budgets, core).explore() for configuration in configurations]

