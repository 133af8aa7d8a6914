"""Driving a rollout: start agents in plan order within the limits, run each agent's steps on the gateway.

Every step is recorded as intent (``StepStarted``) before the gateway call and as outcome after it,
so an engine that died in between learns the outcome from the agent (``step_status``) before
re-sending anything, and the idempotency key makes a re-sent step apply once.
"""

from __future__ import annotations

import bisect
import contextlib
import copy
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timedelta
from queue import Empty, SimpleQueue
from uuid import UUID

from engine.agent_events import AgentLeftStopped, AgentVersionChanged, agent_stream_id
from engine.agent_upgrade import AgentUpgrade, upgrade_stream_id
from engine.errors import AgentStepFailed, ConcurrencyConflict
from engine.events import Event
from engine.inventory import AgentRecord
from engine.ports import AgentAddress, AgentGateway, Lease, PackageRef, StepOutcome, StepStatus, Waiter, WorkQueue
from engine.preloaded import PreloadedUpgrades
from engine.rollout import Rollout, RolloutState
from engine.rollout_events import PlannedAgent, RolloutPlanned
from engine.service import UpgradeService
from engine.turns import FIRST, NEXT, Place, Turns
from engine.upgrade_events import AgentUpgradeScheduled, Step
from engine.upgrade_machine import CANCELLABLE_STATES, STOPPED_STATES, TERMINAL_STATES, UpgradeState

_Decision = Callable[[Rollout], list[Event]]
_AgentDecision = Callable[[AgentRecord], list[Event]]
_InFlight = dict[str, "Future[AgentUpgrade] | Future[AgentUpgrade | None]"]


class _SoleDriver:
    """The lease of an engine that is the only one driving its work: it is never lost."""

    def check(self) -> None:
        return None


SOLE_DRIVER: Lease = _SoleDriver()
"""The lease a runner holds when no other engine process can drive the same work."""
SCHEDULING_THREADS = 16
"""Threads that record the scheduling of a large plan's upgrades (their appends go out together)."""


class RolloutRunner:
    """Drives rollouts to their end through an agent gateway.

    An engine driving several rollouts shares its ``turns`` (so first commands go out before later
    steps across all of them) and its ``upgrades`` (folded from one read when it takes many up at once).
    Without a ``work`` queue the runner drives each upgrade it starts in a thread of its own; with one
    it hands them out, and each is driven by whichever engine process claims it (``drive_handed_out``).
    """

    def __init__(self, service: UpgradeService, gateway: AgentGateway, waiter: Waiter, *,
                 actor: str = "engine", poll_seconds: float = 0.2, turns: Turns | None = None,
                 upgrades: PreloadedUpgrades | None = None, work: WorkQueue | None = None) -> None:
        self.service = service
        self.gateway = gateway
        self.waiter = waiter
        self.actor = actor
        self.poll_seconds = poll_seconds
        self.turns = turns or Turns()
        self.upgrades = upgrades or PreloadedUpgrades(service)
        self.work = work
        self._resume_pending: set[UUID] = set()
        self._resume_lock = threading.Lock()
        self._in_hand = _RolloutsInHand(service)

    def run(self, rollout_id: UUID, lease: Lease = SOLE_DRIVER) -> Rollout:
        """Drive a rollout until it is completed, cancelled, or failed with nothing left to run.

        ``lease`` is checked before every look at the rollout: a runner whose lease was taken over stops
        (``LeaseLost``) and leaves the rollout to the process that took it.
        """
        lease.check()
        rollout = self.service.rollout(rollout_id)
        plan = rollout.plan
        if rollout.state in (RolloutState.COMPLETED, RolloutState.FAILED):  # ended since it was found
            concluded = self._conclude(rollout, plan, {})
            assert concluded is not None
            return concluded
        upgrades = self._schedule_all(plan)
        if rollout.state is RolloutState.PLANNED:
            self._wait_for_start(plan)
            lease.check()
            rollout = self._record_rollout(rollout_id, lambda r: r.start())
        elif self.work is None:
            self._mark_resumed(upgrades.values())
        ids = {a.name: a.upgrade_id for a in plan.agents}
        inflight: _InFlight = {}
        ended: SimpleQueue[str] = SimpleQueue()
        self._track(self._handed_out_before(plan), inflight, ended)
        unstarted = _Unstarted(plan, upgrades, inflight)
        failed = {name for name, upgrade in upgrades.items() if upgrade.state is UpgradeState.FAILED}
        watch = _RolloutWatch(self.service, rollout)
        looked = watch.mark()
        with contextlib.ExitStack() as stack:
            pool = None if self.work is not None else stack.enter_context(
                ThreadPoolExecutor(max_workers=plan.max_concurrent, thread_name_prefix="agent"))
            while True:
                lease.check()
                # In flight, it is enough to see what was recorded before the last look (the agents' reads
                # of the rollout serve it); with nothing in flight, before it may conclude, all of it.
                rollout = watch.refresh(looked if inflight else watch.mark())
                looked = seen = watch.mark()
                for retried in self._retry_failed(rollout, upgrades, inflight):
                    unstarted.add(retried)
                    failed.discard(retried)
                if rollout.state is RolloutState.CANCELLED:
                    self._cancel_waiting(plan, upgrades, inflight)
                if rollout.state is RolloutState.RUNNING and len(failed) <= plan.max_errors:
                    ready = self._ready(plan, upgrades, inflight, unstarted)
                    unstarted.remove(ready)
                    self._track(self._start(ready, plan, watch, upgrades, seen, pool), inflight, ended)
                if not inflight:
                    concluded = self._conclude(rollout, plan, upgrades)
                    if concluded is not None:
                        return concluded
                    self.waiter.wait(self.poll_seconds)
                    continue
                for name in self._ended(ended):
                    ended_upgrade = inflight.pop(name).result()
                    upgrades[name] = ended_upgrade or self.service.upgrade(ids[name])
                    if upgrades[name].state is UpgradeState.FAILED:
                        failed.add(name)
                    elif upgrades[name].state not in STOPPED_STATES:  # given back unfinished: start it again
                        unstarted.add(name)

    @staticmethod
    def _track(started: _InFlight, inflight: _InFlight, ended: SimpleQueue[str]) -> None:
        """Add started upgrades to those in flight; each one's name goes to ``ended`` when it ends."""
        for name, future in started.items():
            inflight[name] = future
            future.add_done_callback(lambda _, name=name: ended.put(name))  # type: ignore[misc]

    def _ended(self, ended: SimpleQueue[str]) -> list[str]:
        """The upgrades that ended: waits up to a poll for the first, then takes every other one ended by then."""
        try:
            names = [ended.get(timeout=self.poll_seconds)]
        except Empty:
            return []
        while True:
            try:
                names.append(ended.get_nowait())
            except Empty:
                return names

    def _handed_out_before(self, plan: RolloutPlanned) -> _InFlight:
        """What a runner taking up a rollout finds in flight: the upgrades handed out and not yet ended."""
        if self.work is None:
            return {}
        names = {a.upgrade_id: a.name for a in plan.agents}
        return {names[upgrade_id]: future for upgrade_id, future in self.work.handed_out(plan.rollout_id).items()}

    def _start(self, ready: list[PlannedAgent], plan: RolloutPlanned, watch: _RolloutWatch,
               upgrades: dict[str, AgentUpgrade], seen: int, pool: ThreadPoolExecutor | None) -> _InFlight:
        """Start the ready agents: hand them out to the work queue, or drive each in a thread of the pool."""
        if pool is None:
            assert self.work is not None
            handed = self.work.hand_out(plan.rollout_id, {agent.upgrade_id: upgrades[agent.name] for agent in ready})
            return {agent.name: handed[agent.upgrade_id] for agent in ready}
        places = [self.turns.line_up(FIRST) for _ in ready]  # all in line before any thread runs
        return {agent.name: pool.submit(self._drive, agent, plan, watch, upgrades[agent.name], seen, place,
                                        SOLE_DRIVER)
                for agent, place in zip(ready, places, strict=True)}

    def drive_handed_out(self, rollout_id: UUID, upgrade_id: UUID, lease: Lease,
                         upgrade: AgentUpgrade | None = None) -> AgentUpgrade:
        """Drive one upgrade handed out by a rollout's runner (and claimed under ``lease``) until it needs
        nothing more from an engine, starting from ``upgrade`` as that runner saw it if given (else as
        stored). An upgrade already under way is resumed: its agent is asked about a step recorded as
        started before anything is sent again."""
        with self._in_hand.use(rollout_id) as (plan, agents, watch):
            lease.check()
            upgrade = upgrade or self.service.upgrade(upgrade_id)
            self._mark_resumed([upgrade])
            return self._drive(agents[upgrade_id], plan, watch, upgrade, watch.mark(), self.turns.line_up(FIRST),
                               lease)

    # -- the rollout ---------------------------------------------------------------------------

    def _wait_for_start(self, plan: RolloutPlanned) -> None:
        if plan.start_at is not None:
            remaining = (plan.start_at - self.service.clock.now()).total_seconds()
            if remaining > 0:
                self.waiter.wait(remaining)

    def _schedule_all(self, plan: RolloutPlanned) -> dict[str, AgentUpgrade]:
        """Every upgrade of the plan, scheduled first where it is not yet; the appends of a large plan go out
        from several threads at once, so the store may write them together."""
        if len(plan.agents) < 2:
            return {a.name: self._scheduled(a, plan) for a in plan.agents}
        with ThreadPoolExecutor(max_workers=min(SCHEDULING_THREADS, len(plan.agents)),
                                thread_name_prefix="schedule") as pool:
            scheduled = list(pool.map(lambda agent: self._scheduled(agent, plan), plan.agents))
        return {a.name: upgrade for a, upgrade in zip(plan.agents, scheduled, strict=True)}

    def _scheduled(self, agent: PlannedAgent, plan: RolloutPlanned) -> AgentUpgrade:
        upgrade = self.upgrades.take(agent.upgrade_id)
        if upgrade.scheduled is None:
            scheduled = AgentUpgradeScheduled(upgrade_id=agent.upgrade_id, rollout_id=plan.rollout_id,
                                              agent=agent.name, package_sha256=plan.package_sha256,
                                              target_version=plan.package_version, plan=agent.plan)
            try:
                self.service.append(upgrade_stream_id(agent.upgrade_id), 0, upgrade.schedule(scheduled),
                                    actor=self.actor, correlation_id=plan.rollout_id)
                upgrade.apply(scheduled)
            except ConcurrencyConflict:
                upgrade = self.service.upgrade(agent.upgrade_id)
        return upgrade

    def _mark_resumed(self, upgrades: Iterable[AgentUpgrade]) -> None:
        """This engine takes over upgrades already under way: each unfinished one it resumes gets an
        ``AgentUpgradeResumed`` in front of the first events it records (so resuming costs no extra write)."""
        with self._resume_lock:
            self._resume_pending.update(u.scheduled.upgrade_id for u in upgrades
                                        if u.scheduled is not None and u.has_begun
                                        and u.state not in STOPPED_STATES)

    def _ready(self, plan: RolloutPlanned, upgrades: dict[str, AgentUpgrade], inflight: _InFlight,
               unstarted: _Unstarted) -> list[PlannedAgent]:
        """The agents to start now, in plan order: not in flight nor stopped, the agents they wait for
        completed, as many as ``--max-concurrent`` leaves room for."""
        free = plan.max_concurrent - len(inflight)
        if free <= 0:
            return []
        ready: list[PlannedAgent] = []
        for a in unstarted:
            if a.name not in inflight and upgrades[a.name].state not in STOPPED_STATES \
                    and all(upgrades[b].state is UpgradeState.COMPLETED for b in a.after):
                ready.append(a)
                if len(ready) == free:
                    break
        return ready

    def _conclude(self, rollout: Rollout, plan: RolloutPlanned,
                  upgrades: dict[str, AgentUpgrade]) -> Rollout | None:
        """Record the end of a rollout with nothing in flight; None while it may still go on."""
        rollout_id = plan.rollout_id
        if rollout.state is RolloutState.RUNNING:
            if all(u.state in TERMINAL_STATES for u in upgrades.values()):
                completed = sum(u.state is UpgradeState.COMPLETED for u in upgrades.values())
                rollout = self._record_rollout(rollout_id,
                                               lambda r: r.complete(completed, len(upgrades) - completed))
            else:
                failed = _failed(upgrades)
                reason = (f"error budget exceeded: {failed} agents failed, --max-errors is {plan.max_errors}"
                          if failed > plan.max_errors else f"{failed} of {len(upgrades)} agents failed")
                return self._record_rollout(rollout_id, lambda r: r.fail(reason))
        if rollout.state in (RolloutState.COMPLETED, RolloutState.CANCELLED):
            self.service.release(rollout_id, actor=self.actor)
            return rollout
        if rollout.state is RolloutState.FAILED:
            return rollout
        return None

    def _retry_failed(self, rollout: Rollout, upgrades: dict[str, AgentUpgrade],
                      inflight: _InFlight) -> list[str]:
        """Retry each failed upgrade the operator asked to retry more often than it was retried; return them."""
        retried = []
        for name, requested in rollout.retry_requests.items():
            upgrade = upgrades.get(name)
            if upgrade is not None and name not in inflight and upgrade.is_failed and requested > upgrade.retries:
                self._record(upgrade, upgrade.retry(), rollout.plan.rollout_id)
                retried.append(name)
        return retried

    def _cancel_waiting(self, plan: RolloutPlanned, upgrades: dict[str, AgentUpgrade],
                        inflight: _InFlight) -> None:
        for agent in plan.agents:
            upgrade = upgrades[agent.name]
            if agent.name not in inflight and upgrade.state in CANCELLABLE_STATES:
                self._record(upgrade, upgrade.cancel("the rollout was cancelled"), plan.rollout_id)

    def _record_rollout(self, rollout_id: UUID, decide: _Decision) -> Rollout:
        while True:
            rollout = self.service.rollout(rollout_id)
            try:
                self.service.append(f"rollout-{rollout_id}", rollout.version, decide(rollout), actor=self.actor,
                                    correlation_id=rollout_id)
                return self.service.rollout(rollout_id)
            except ConcurrencyConflict:
                continue

    # -- one agent -----------------------------------------------------------------------------

    def _drive(self, agent: PlannedAgent, plan: RolloutPlanned, watch: _RolloutWatch, upgrade: AgentUpgrade,
               seen: int, place: Place, lease: Lease) -> AgentUpgrade:
        """Run one agent's remaining steps; return its upgrade when it ends, fails or is cancelled.

        ``seen`` marks when it was handed to this thread (see ``_advance``); so does ``place``, its place
        in line for a turn of rank ``FIRST``, held up to the first command to the agent. ``LeaseLost``
        ends the drive as soon as ``lease`` is found lost.
        """
        address = AgentAddress(agent.name, agent.address)
        package = PackageRef(plan.package_sha256, plan.package_version)
        with self.turns.hold(place):
            while True:
                try:
                    if self._advance(upgrade, address, package, plan, watch, seen, lease):
                        return upgrade
                except ConcurrencyConflict:
                    upgrade = self.service.upgrade(agent.upgrade_id)  # someone else wrote to it: reload, decide
                seen = watch.mark()  # after this step's call to the agent

    def _advance(self, upgrade: AgentUpgrade, address: AgentAddress, package: PackageRef,
                 plan: RolloutPlanned, watch: _RolloutWatch, seen: int, lease: Lease) -> bool:
        """Take the next step of one upgrade; True once it needs nothing more from this engine.

        A cancel recorded before ``seen`` (the upgrade was handed to this thread, or its last agent call
        ended) stops the upgrade before its next step. ``lease`` is checked before deciding and again
        before each command to the agent (a wait may have outlasted it).
        """
        lease.check()
        rollout_id = plan.rollout_id
        if upgrade.state in STOPPED_STATES:
            return True
        if upgrade.step_in_progress is None:
            if upgrade.state in CANCELLABLE_STATES and watch.refresh(seen).state is RolloutState.CANCELLED:
                self._record(upgrade, upgrade.cancel("the rollout was cancelled"), rollout_id)
                return True
            step = upgrade.next_step
            if step is None:
                self._complete(upgrade, address, rollout_id)
                return True
            if upgrade.attempts_this_round.get(step, 0) > plan.step_policy.retry_budget:
                self._record(upgrade, upgrade.fail(upgrade.last_error or f"{step.value} failed"), rollout_id)
                return True
            delay = upgrade.plan.delayed_start_seconds
            if step is Step.START and delay and upgrade.waiting_until is None \
                    and not upgrade.attempts_this_round.get(step):
                self._record(upgrade, upgrade.delay_step(step, self._after(delay), "delayed start"), rollout_id)
            if upgrade.waiting_until is not None:
                self._wait_until(upgrade.waiting_until)
                lease.check()
            self._record(upgrade, upgrade.start_step(step), rollout_id)
        else:
            status = self._ask_outcome(upgrade, address, plan, lease)
            if status is None:
                return True
            if status is StepStatus.FAILED:
                self._record(upgrade, upgrade.fail_attempt(upgrade.step_in_progress,
                                                           "the agent reports the step failed"), rollout_id)
                return False
        lease.check()
        self._perform(upgrade, address, package, plan, rollout_id)
        return upgrade.is_failed

    def _after(self, seconds: float) -> datetime:
        return self.service.clock.now() + timedelta(seconds=seconds)

    def _wait_until(self, due: datetime) -> None:
        remaining = (due - self.service.clock.now()).total_seconds()
        if remaining > 0:
            self._wait(remaining)

    def _wait(self, seconds: float) -> None:
        with self.turns.released():
            self.waiter.wait(seconds)

    def _ask_outcome(self, upgrade: AgentUpgrade, address: AgentAddress, plan: RolloutPlanned,
                     lease: Lease) -> StepStatus | None:
        """For a step recorded as started but not ended: ask the agent before re-sending it.

        An agent that cannot be asked is asked again after the backoff (never re-sent under a new key,
        which could apply a step twice); past the retry budget the upgrade fails, outcome unknown.
        """
        step = upgrade.step_in_progress
        assert step is not None
        key = upgrade.idempotency_key(step, upgrade.attempts[step])
        asked = 0
        while True:
            lease.check()
            try:
                with self.turns.released():
                    return self.gateway.step_status(address, key)
            except AgentStepFailed as failure:
                if asked == plan.step_policy.retry_budget:
                    self._record(upgrade, upgrade.fail(f"the outcome of {step.value} is unknown: {failure}"),
                                 plan.rollout_id)
                    return None
                self._wait(plan.step_policy.backoff_seconds * 2 ** asked)
                asked += 1

    def _perform(self, upgrade: AgentUpgrade, address: AgentAddress, package: PackageRef,
                 plan: RolloutPlanned, rollout_id: UUID) -> None:
        step = upgrade.step_in_progress
        assert step is not None
        attempt = upgrade.attempts[step]

        def on_phase(phase: str, index: int, count: int) -> None:
            with self.turns.hold(self.turns.line_up(NEXT)):
                self._record(upgrade, upgrade.report_phase(phase, index, count), rollout_id)

        try:
            with self.turns.released():
                outcome = self.gateway.perform(address, step, upgrade.idempotency_key(step, attempt), package,
                                               on_phase if step is Step.INSTALL else None)
        except AgentStepFailed as failure:
            self._record(upgrade, self._failed_attempt(upgrade, step, failure, plan), rollout_id)
            return
        self._finish(upgrade, step, outcome, address, package, rollout_id)

    def _failed_attempt(self, upgrade: AgentUpgrade, step: Step, failure: AgentStepFailed,
                        plan: RolloutPlanned) -> list[Event]:
        """A failed attempt and what follows it, for one append: the upgrade fails once the retry budget
        is spent, otherwise the step backs off (so the backoff is never lost to a crash in between)."""
        failed = upgrade.fail_attempt(step, failure.reason)
        after = copy.deepcopy(upgrade)
        for event in failed:
            after.apply(event)
        attempts = after.attempts_this_round[step]
        if attempts > plan.step_policy.retry_budget:
            return [*failed, *after.fail(str(failure))]
        backoff = plan.step_policy.backoff_seconds * 2 ** (attempts - 1)
        return [*failed, *after.delay_step(step, self._after(backoff), "retry backoff")]

    def _finish(self, upgrade: AgentUpgrade, step: Step, outcome: StepOutcome, address: AgentAddress,
                package: PackageRef, rollout_id: UUID) -> None:
        """Record a step's outcome. After an install the agent's new version is recorded first, and only
        if not recorded yet, so a crash between the two writes is mended by the resumed step."""
        if step is Step.INSTALL and outcome.version_after is not None:
            self._record_version(upgrade, address, outcome.version_after, rollout_id)
        if step is Step.INSTALL and outcome.version_after != package.version:
            self._record(upgrade, upgrade.fail(
                f"agent {address.name} reports version {outcome.version_after} after the install, "
                f"expected {package.version}"), rollout_id)
            return
        self._record(upgrade, upgrade.finish_step(step, outcome.version_after), rollout_id)

    def _record_version(self, upgrade: AgentUpgrade, address: AgentAddress, version: str, rollout_id: UUID) -> None:
        upgrade_id = str(upgrade.scheduled.upgrade_id if upgrade.scheduled else "")
        self._record_on_agent(address.name, lambda record: [AgentVersionChanged(
            version=version, previous_version=record.version, upgrade_id=upgrade_id)]
            if record.version != version else [], rollout_id)

    def _complete(self, upgrade: AgentUpgrade, address: AgentAddress, rollout_id: UUID) -> None:
        """Finish the upgrade; an agent left stopped is recorded first (once), so a crash cannot forget it."""
        if not upgrade.plan.upload_only and not upgrade.plan.options.auto_start and upgrade.scheduled is not None:
            upgrade_id = str(upgrade.scheduled.upgrade_id)
            self._record_on_agent(address.name, lambda record: [AgentLeftStopped(upgrade_id=upgrade_id)]
                                  if record.stopped_by_upgrade != upgrade_id else [], rollout_id)
        self._record(upgrade, upgrade.complete(), rollout_id)

    def _record(self, upgrade: AgentUpgrade, events: Sequence[Event], rollout_id: UUID) -> None:
        assert upgrade.scheduled is not None
        upgrade_id = upgrade.scheduled.upgrade_id
        with self._resume_lock:
            resuming = upgrade_id in self._resume_pending
        if resuming:
            events = [*upgrade.resume_after_restart(), *events]
        self.service.append(upgrade_stream_id(upgrade_id), upgrade.version, events, actor=self.actor,
                            correlation_id=rollout_id)
        if resuming:
            with self._resume_lock:
                self._resume_pending.discard(upgrade_id)
        for event in events:
            upgrade.apply(event)

    def _record_on_agent(self, name: str, decide: _AgentDecision, rollout_id: UUID) -> None:
        while True:
            record = self.service.agent(name)
            events = decide(record)
            if not events:
                return
            try:
                self.service.append(agent_stream_id(name), record.stream_version, events,
                                    actor=self.actor, correlation_id=rollout_id)
                return
            except ConcurrencyConflict:
                continue


class _Unstarted:
    """The plan's agents that may still be started (neither stopped nor in flight when last seen), in plan
    order, so the agents to start are looked for among them only, not among every agent of a large plan."""

    def __init__(self, plan: RolloutPlanned, upgrades: dict[str, AgentUpgrade], inflight: _InFlight) -> None:
        self._by_name = {a.name: a for a in plan.agents}
        self._order = {a.name: index for index, a in enumerate(plan.agents)}
        self._agents = [a for a in plan.agents
                        if a.name not in inflight and upgrades[a.name].state not in STOPPED_STATES]

    def __iter__(self) -> Iterator[PlannedAgent]:
        return iter(self._agents)

    def remove(self, started: list[PlannedAgent]) -> None:
        if started:
            names = {a.name for a in started}
            self._agents = [a for a in self._agents if a.name not in names]

    def add(self, name: str) -> None:
        """An agent to be started again (retried, or given back unfinished), in its place in the plan."""
        if all(a.name != name for a in self._agents):
            bisect.insort(self._agents, self._by_name[name], key=lambda a: self._order[a.name])


class _RolloutsInHand:
    """The plans and watches of the rollouts whose handed-out upgrades this runner drives, kept while in use."""

    def __init__(self, service: UpgradeService) -> None:
        self._service = service
        self._lock = threading.Lock()
        self._entries: dict[UUID, tuple[RolloutPlanned, dict[UUID, PlannedAgent], _RolloutWatch]] = {}
        self._users: dict[UUID, int] = {}

    @contextlib.contextmanager
    def use(self, rollout_id: UUID) -> Iterator[tuple[RolloutPlanned, dict[UUID, PlannedAgent], _RolloutWatch]]:
        """The rollout's plan, its agents by upgrade id and a watch on it, read once for all its drives at once."""
        with self._lock:
            entry = self._entries.get(rollout_id)
            self._users[rollout_id] = self._users.get(rollout_id, 0) + 1
        try:
            if entry is None:
                rollout = self._service.rollout(rollout_id)
                read = (rollout.plan, {a.upgrade_id: a for a in rollout.plan.agents},
                        _RolloutWatch(self._service, rollout))
                with self._lock:
                    entry = self._entries.setdefault(rollout_id, read)
            yield entry
        finally:
            with self._lock:
                self._users[rollout_id] -= 1
                if not self._users[rollout_id]:
                    del self._users[rollout_id]
                    self._entries.pop(rollout_id, None)


class _RolloutWatch:
    """The rollout as last read, brought up to date by reading only its new events (thread-safe).

    Reads are numbered as they begin. A caller asks for a read begun after some ``mark``; a read in
    progress or done that began after it serves every caller waiting for it, so the agents of a
    rollout that check it at once share one read instead of one each.
    """

    def __init__(self, service: UpgradeService, rollout: Rollout) -> None:
        self._service = service
        self._rollout = rollout
        self._stream = f"rollout-{rollout.plan.rollout_id}"
        self._changed = threading.Condition()
        self._begun = 0
        self._latest = 0
        self._reading = False

    def mark(self) -> int:
        """Now, as a mark: ``refresh(mark)`` then sees every event recorded before this call."""
        with self._changed:
            return self._begun

    def refresh(self, since: int) -> Rollout:
        """Apply the events recorded since the last look (an operator's pause, resume, cancel or retry),
        at least those recorded before ``since`` was marked."""
        with self._changed:
            while self._reading and self._latest <= since:
                self._changed.wait()
            if self._latest > since:
                return self._rollout
            self._reading = True
            self._begun += 1
            number, after = self._begun, self._rollout.version
        try:
            recorded = self._service.store.read_stream(self._stream, after_version=after)
        except BaseException:
            self._done_reading()
            raise
        with self._changed:
            for event in recorded:
                self._rollout.apply(event.event)
            self._latest = number
        self._done_reading()
        return self._rollout

    def _done_reading(self) -> None:
        with self._changed:
            self._reading = False
            self._changed.notify_all()


def _failed(upgrades: dict[str, AgentUpgrade]) -> int:
    return sum(u.state is UpgradeState.FAILED for u in upgrades.values())

