"""Driving a rollout: carry out the decisions of ``engine/decisions.py`` with threads, agent calls and waits.

Every step is recorded as intent (``StepStarted``) before the gateway call and as outcome after it. A step
whose outcome was not learned (no answer, a cut connection, an engine that died in between) is in doubt:
the agent is asked (``step_status``) before anything is sent again, and a re-send uses the same
idempotency key, so a step applies once.
"""

from __future__ import annotations

import bisect
import contextlib
import functools
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timedelta
from queue import Empty, SimpleQueue
from uuid import UUID

from dma_upgrade.adapters.clock import seconds_text, utc_text
from dma_upgrade.adapters.runtime.ports import Lease, Stopping, Waiter, WorkQueue
from dma_upgrade.adapters.runtime.preloaded import PreloadedUpgrades
from dma_upgrade.adapters.runtime.turns import FIRST, NEXT, Place, Turns
from dma_upgrade.engine.agent_events import agent_stream_id
from dma_upgrade.engine.agent_upgrade import AgentUpgrade, upgrade_stream_id
from dma_upgrade.engine.decisions import (
    Ask,
    AwaitManualStart,
    Finished,
    LeaveStopped,
    Record,
    Send,
    UpgradeFacts,
    WaitUntil,
    agents_to_start,
    answered,
    begins_install,
    cancellations,
    conclusion,
    learned,
    left_stopped,
    next_action,
    refused,
    reports_version,
    retries,
    start_due,
    unanswered,
    version_change,
)
from dma_upgrade.engine.errors import AgentOutcomeUnknown, AgentStepFailed, ConcurrencyConflict, Conflict
from dma_upgrade.engine.events import Event
from dma_upgrade.engine.inventory import AgentRecord
from dma_upgrade.engine.phase_reports import PhaseReport, PhaseReports
from dma_upgrade.engine.ports import AgentAddress, AgentGateway, PackageRef
from dma_upgrade.engine.rollout import Rollout, RolloutState
from dma_upgrade.engine.rollout_events import (
    LATE_START_TOLERANCE_SECONDS,
    PlannedAgent,
    RolloutPlanned,
    rollout_stream_id,
    start_lateness_seconds,
)
from dma_upgrade.engine.service import UpgradeService
from dma_upgrade.engine.upgrade_events import AgentUpgradeScheduled, Step, StepStarted
from dma_upgrade.engine.upgrade_machine import CANCELLABLE_STATES, STOPPED_STATES, UpgradeState

_Decision = Callable[[Rollout], list[Event]]
_log = logging.getLogger("dma_upgrade.engine")
_InFlight = dict[str, "Future[AgentUpgrade] | Future[AgentUpgrade | None]"]


class _SoleDriver:
    """The lease of an engine that is the only one driving its work: it is never lost."""

    def check(self) -> None:
        return None


SOLE_DRIVER: Lease = _SoleDriver()
"""The lease a runner holds when no other engine process can drive the same work."""
SCHEDULING_THREADS = 16
"""Threads that record the scheduling of a large plan's upgrades (their appends go out together)."""
ASK_BACKOFF_CAP_SECONDS = 60.0
"""The longest wait between two attempts to ask an agent about a step in doubt."""
KEPT_ROLLOUTS = 4
"""Rollouts whose plan a runner keeps after their last drive here ended (``_RolloutsInHand``)."""


def _log_lateness(plan: RolloutPlanned, started_at: datetime) -> None:
    """Warn of a scheduled start recorded later than its time (no engine ran then, or it was too busy)."""
    late = start_lateness_seconds(plan.start_at, started_at)
    if late is not None and late > LATE_START_TOLERANCE_SECONDS:
        assert plan.start_at is not None
        _log.warning("scheduled start of rollout %s fired %s s late (scheduled %s)", plan.rollout_id,
                     seconds_text(late), utc_text(plan.start_at))


class _Guarded:
    """A lease checked together with this process's shutdown: ``Stopping`` comes first, so a drive that stops
    because the process does is never taken for one whose lease was taken over."""

    def __init__(self, lease: Lease, stopping: threading.Event) -> None:
        self._lease = lease
        self._stopping = stopping

    def check(self) -> None:
        if self._stopping.is_set():
            raise Stopping()
        self._lease.check()


class _Drive:
    """What one driver of one upgrade knows beyond the events: whom it drives, under which lease, whether it
    recorded the intent of the step in progress itself (and sent nothing since), and failed asks in a row."""

    def __init__(self, agent: PlannedAgent, plan: RolloutPlanned, lease: Lease) -> None:
        self.agent = agent
        self.plan = plan
        self.lease = lease
        self.address = AgentAddress(agent.name, agent.address)
        self.package = PackageRef(plan.package_sha256, plan.package_version, agent.plan.options,
                                  agent.plan.web_only)
        self.record = AgentRecord(name=agent.name, address=agent.address, cluster=agent.cluster,
                                  version=agent.current_version)
        self.intent_fresh = False
        self.asked = 0


class RolloutRunner:
    """Drives rollouts to their end through an agent gateway.

    An engine driving several rollouts shares its ``turns`` (so first commands go out before later
    steps across all of them) and its ``upgrades`` (folded from one read when it takes many up at once).
    Without a ``work`` queue the runner drives each upgrade it starts in a thread of its own; with one
    it hands them out, and each is driven by whichever engine process claims it (``drive_handed_out``).
    """

    def __init__(self, service: UpgradeService, gateway: AgentGateway, waiter: Waiter, *,
                 actor: str = "engine", poll_seconds: float = 0.2, turns: Turns | None = None,
                 upgrades: PreloadedUpgrades | None = None, work: WorkQueue | None = None,
                 stopping: threading.Event | None = None, phase_seconds: float = 0.0) -> None:
        self.service = service
        self.gateway = gateway
        self.waiter = waiter
        self.actor = actor
        self.poll_seconds = poll_seconds
        self.phase_seconds = phase_seconds
        """The least time between two recorded phase reports of one install (``PhaseReports``; 0: every one)."""
        self.turns = turns or Turns()
        self.upgrades = upgrades or PreloadedUpgrades(service)
        self.work = work
        self._resume_pending: set[UUID] = set()
        self._resume_lock = threading.Lock()
        self._in_hand = _RolloutsInHand(service)
        self.stopping = stopping or threading.Event()
        """Set when this process shuts down: every drive stops at its next check (``Stopping``)."""

    def run(self, rollout_id: UUID, lease: Lease = SOLE_DRIVER) -> Rollout:
        """Drive a rollout until it is completed, cancelled, or failed with nothing left to run.

        ``lease`` is checked before every look at the rollout: a runner whose lease was taken over stops
        (``LeaseLost``) and leaves the rollout to the process that took it.
        """
        lease = _Guarded(lease, self.stopping)
        lease.check()
        rollout = self.service.rollout(rollout_id)
        plan = rollout.plan
        if rollout.state in (RolloutState.COMPLETED, RolloutState.FAILED):  # ended since it was found
            concluded = self._conclude(rollout, {})
            assert concluded is not None
            return concluded
        upgrades = self._schedule_all(plan)
        if rollout.state is RolloutState.PLANNED:
            self._wait_for_start(plan, lease)
            lease.check()
            started_at = self.service.clock.now()
            rollout = self._record_rollout(rollout_id, lambda r: r.start(scheduled_at=plan.start_at,
                                                                         started_at=started_at))
            _log_lateness(plan, started_at)
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
                for retried, events in retries(rollout, upgrades, inflight).items():
                    self._record(upgrades[retried], events, plan.rollout_id)
                    unstarted.add(retried)
                    failed.discard(retried)
                for name, events in cancellations(rollout, upgrades, inflight).items():
                    self._record(upgrades[name], events, plan.rollout_id)
                ready = agents_to_start(rollout, unstarted, upgrades, inflight, plan.max_concurrent - len(inflight),
                                        len(failed))
                if ready:
                    unstarted.remove(ready)
                    self._track(self._start(ready, plan, watch, upgrades, seen, pool, lease), inflight, ended)
                if not inflight:
                    concluded = self._conclude(rollout, upgrades)
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
               upgrades: dict[str, AgentUpgrade], seen: int, pool: ThreadPoolExecutor | None,
               lease: Lease) -> _InFlight:
        """Start the ready agents: hand them out to the work queue, or drive each in a thread of the pool, under
        the rollout's ``lease``."""
        if pool is None:
            assert self.work is not None
            handed = self.work.hand_out(plan.rollout_id, {agent.upgrade_id: upgrades[agent.name] for agent in ready})
            return {agent.name: handed[agent.upgrade_id] for agent in ready}
        places = [self.turns.line_up(FIRST) for _ in ready]  # all in line before any thread runs
        return {agent.name: pool.submit(self._drive, agent, plan, watch, upgrades[agent.name], seen, place, lease)
                for agent, place in zip(ready, places, strict=True)}

    def drive_handed_out(self, rollout_id: UUID, upgrade_id: UUID, lease: Lease,
                         upgrade: AgentUpgrade | None = None) -> AgentUpgrade:
        """Drive one upgrade handed out by a rollout's runner (and claimed under ``lease``) until it needs
        nothing more from an engine, starting from ``upgrade`` as that runner saw it if given (else as
        stored). An upgrade already under way is resumed: its agent is asked about a step recorded as
        started before anything is sent again."""
        lease = _Guarded(lease, self.stopping)
        with self._in_hand.use(rollout_id) as (plan, agents, watch):
            lease.check()
            upgrade = upgrade or self.service.upgrade(upgrade_id)
            self._mark_resumed([upgrade])
            return self._drive(agents[upgrade_id], plan, watch, upgrade, watch.mark(), self.turns.line_up(FIRST),
                               lease)

    # -- the rollout ---------------------------------------------------------------------------

    def _wait_for_start(self, plan: RolloutPlanned, lease: Lease) -> None:
        while (due := start_due(plan, self.service.clock.now())) is not None:
            lease.check()
            self.waiter.wait((due.due - self.service.clock.now()).total_seconds())

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

    def _conclude(self, rollout: Rollout, upgrades: dict[str, AgentUpgrade]) -> Rollout | None:
        """Record the end of a rollout with nothing in flight; None while it may still go on."""
        rollout_id = rollout.plan.rollout_id
        if conclusion(rollout, upgrades):
            rollout = self._record_rollout(rollout_id, lambda r: conclusion(r, upgrades))
        if rollout.state in (RolloutState.COMPLETED, RolloutState.CANCELLED):
            self.service.release(rollout_id, actor=self.actor)
            return rollout
        if rollout.state is RolloutState.FAILED:
            return rollout
        return None

    def _record_rollout(self, rollout_id: UUID, decide: _Decision) -> Rollout:
        while True:
            rollout = self.service.rollout(rollout_id)
            try:
                self.service.append(rollout_stream_id(rollout_id), rollout.version, decide(rollout), actor=self.actor,
                                    correlation_id=rollout_id)
                return self.service.rollout(rollout_id)
            except ConcurrencyConflict:
                continue

    # -- one agent -----------------------------------------------------------------------------

    def _drive(self, agent: PlannedAgent, plan: RolloutPlanned, watch: _RolloutWatch, upgrade: AgentUpgrade,
               seen: int, place: Place, lease: Lease) -> AgentUpgrade:
        """Carry out one upgrade's decisions until it needs nothing more from an engine; return it then.

        ``seen`` marks when it was handed to this thread: a cancel recorded before it stops the upgrade
        before its next step. ``place``, its place in line for a turn of rank ``FIRST``, is held up to the
        first command to the agent. ``lease`` is checked before every decision and every agent command;
        ``LeaseLost`` ends the drive as soon as it is found lost.
        """
        drive = _Drive(agent, plan, lease)
        with self.turns.hold(place):
            while True:
                lease.check()
                try:
                    action = next_action(upgrade, self._facts(upgrade, drive, watch, seen))
                    drive.intent_fresh = False
                    match action:
                        case Finished():
                            return upgrade
                        case Record(events=events):
                            self._record(upgrade, self._using_package(upgrade, events, drive), plan.rollout_id)
                            drive.intent_fresh = any(isinstance(event, StepStarted) for event in events)
                        case LeaveStopped():
                            self._record_on_agent(agent.name, functools.partial(left_stopped, upgrade),
                                                  plan.rollout_id)
                        case WaitUntil(due=due):
                            self._wait_until(due)
                        case AwaitManualStart():
                            self._wait(self.poll_seconds)
                        case Send(step=step, key=key):
                            self._send(upgrade, drive, step, key)
                        case Ask(step=step, key=key):
                            upgrade = self._ask(upgrade, drive, step, key)
                except ConcurrencyConflict:
                    upgrade = self.service.upgrade(agent.upgrade_id)  # someone else wrote to it: reload, decide
                    drive.intent_fresh = False
                seen = watch.mark()  # after this action

    def _using_package(self, upgrade: AgentUpgrade, events: tuple[Event, ...], drive: _Drive) -> Sequence[Event]:
        """``events``, after marking the package used when they begin an install (the package is completed iff
        some agent began installing it); the upgrade fails instead when another rollout used the package."""
        if not begins_install(events):
            return events
        try:
            self.service.mark_package_used(drive.plan, drive.agent.name, actor=self.actor)
        except Conflict as refusal:
            return upgrade.fail(str(refusal))
        return events

    def _facts(self, upgrade: AgentUpgrade, drive: _Drive, watch: _RolloutWatch, seen: int) -> UpgradeFacts:
        """What the next decision reads: the rollout and the agent's record are read only when it needs them."""
        cancellable = upgrade.step_in_progress is None and upgrade.state in CANCELLABLE_STATES
        cancelled = cancellable and watch.refresh(seen).state is RolloutState.CANCELLED
        plan = upgrade.plan if upgrade.scheduled is not None else None
        reads_agent = plan is not None and not plan.upload_only and not plan.options.auto_start
        agent = self.service.agent(drive.agent.name) if reads_agent else drive.record
        return UpgradeFacts(now=self.service.clock.now(), policy=drive.plan.step_policy, agent=agent,
                            cancelled=cancelled, intent_fresh=drive.intent_fresh)

    def _wait_until(self, due: datetime) -> None:
        remaining = (due - self.service.clock.now()).total_seconds()
        if remaining > 0:
            self._wait(remaining)

    def _wait(self, seconds: float) -> None:
        with self.turns.released():
            self.waiter.wait(seconds)

    def _send(self, upgrade: AgentUpgrade, drive: _Drive, step: Step, key: str) -> None:
        """Ask the agent to perform ``step`` and record what came of it (done, refused, or in doubt). Of an
        install's phase reports, those ``PhaseReports`` holds back are recorded with the outcome, in its append."""
        rollout_id = drive.plan.rollout_id
        reports = PhaseReports(timedelta(seconds=self.phase_seconds))

        def on_phase(phase: str, index: int, count: int) -> None:
            report = reports.reported(PhaseReport(phase, index, count), self.service.clock.now())
            if report is not None:
                with self.turns.hold(self.turns.line_up(NEXT)):
                    self._record(upgrade, upgrade.report_phase(*report), rollout_id)

        def with_phase_held(outcome_events: Sequence[Event]) -> list[Event]:
            held = reports.held()
            return [*(() if held is None else upgrade.report_phase(*held)), *outcome_events]

        drive.lease.check()
        try:
            with self.turns.released():
                outcome = self.gateway.perform(drive.address, step, key, drive.package,
                                               on_phase if step is Step.INSTALL else None)
        except AgentOutcomeUnknown as silence:
            self._record(upgrade, with_phase_held(unanswered(upgrade, step, silence.reason)), rollout_id)
            return
        except AgentStepFailed as refusal:
            self._record(upgrade, with_phase_held(refused(upgrade, step, refusal.reason, drive.plan.step_policy,
                                                          self.service.clock.now())), rollout_id)
            return
        if reports_version(step, outcome):
            self._record_on_agent(drive.agent.name, lambda record: version_change(record, upgrade, step, outcome),
                                  rollout_id)
        self._record(upgrade, with_phase_held(answered(upgrade, step, outcome, drive.package.version)), rollout_id)

    def _ask(self, upgrade: AgentUpgrade, drive: _Drive, step: Step, key: str) -> AgentUpgrade:
        """Ask the agent what it knows of ``key`` and record it. An agent that cannot be asked keeps the step
        in doubt: it is asked again after a backoff (growing, capped), unless an operator resolved it meanwhile.
        Returns the upgrade as it now stands."""
        drive.lease.check()
        try:
            with self.turns.released():
                status = self.gateway.step_status(drive.address, key)
        except AgentStepFailed as failure:
            self._record(upgrade, unanswered(upgrade, step, f"cannot ask the agent about {key}: {failure.reason}"),
                         drive.plan.rollout_id)
            policy = drive.plan.step_policy
            self._wait(min(policy.backoff_seconds * 2 ** min(drive.asked, 16), ASK_BACKOFF_CAP_SECONDS))
            drive.asked += 1
            return self.service.upgrade(drive.agent.upgrade_id)  # an operator may have resolved the doubt
        drive.asked = 0
        self._record(upgrade, learned(upgrade, step, status, drive.plan.step_policy, self.service.clock.now()),
                     drive.plan.rollout_id)
        return upgrade

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

    def _record_on_agent(self, name: str, decide: Callable[[AgentRecord], list[Event]], rollout_id: UUID) -> None:
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
    """The plans and watches of the rollouts whose handed-out upgrades this runner drives: those in use, and the
    last ``KEPT_ROLLOUTS`` used. A plan never changes and a watch reads only what is new, so a drive claimed
    after its rollout's other drives here ended does not read and decode the whole plan again (a large event: one
    entry per agent of the rollout)."""

    def __init__(self, service: UpgradeService) -> None:
        self._service = service
        self._lock = threading.Lock()
        self._entries: OrderedDict[UUID, tuple[RolloutPlanned, dict[UUID, PlannedAgent], _RolloutWatch]] = \
            OrderedDict()
        self._users: dict[UUID, int] = {}

    @contextlib.contextmanager
    def use(self, rollout_id: UUID) -> Iterator[tuple[RolloutPlanned, dict[UUID, PlannedAgent], _RolloutWatch]]:
        """The rollout's plan, its agents by upgrade id and a watch on it, read once for all its drives."""
        with self._lock:
            entry = self._entries.get(rollout_id)  # in use, it is never dropped: its recency counts at the end
            self._users[rollout_id] = self._users.get(rollout_id, 0) + 1
        failed = False
        try:
            if entry is None:
                rollout = self._service.rollout(rollout_id)
                read = (rollout.plan, {a.upgrade_id: a for a in rollout.plan.agents},
                        _RolloutWatch(self._service, rollout))
                with self._lock:
                    entry = self._entries.setdefault(rollout_id, read)
            yield entry
        except BaseException:
            failed = True
            raise
        finally:
            with self._lock:
                self._users[rollout_id] -= 1
                if not self._users[rollout_id]:
                    del self._users[rollout_id]
                if failed:  # whatever went wrong, the next drive starts from a fresh read
                    self._entries.pop(rollout_id, None)
                elif rollout_id in self._entries:
                    self._entries.move_to_end(rollout_id)  # used until now: the most recently used
                self._forget_unused()

    def _forget_unused(self) -> None:
        """Drop the least recently used entries not in use, beyond ``KEPT_ROLLOUTS`` of them (under the lock)."""
        unused = [rollout_id for rollout_id in self._entries if rollout_id not in self._users]
        for rollout_id in unused[:max(0, len(unused) - KEPT_ROLLOUTS)]:
            del self._entries[rollout_id]


class _RolloutWatch:
    """The rollout as last read, brought up to date by reading only its new events (thread-safe).

    Reads are numbered as they begin. A caller asks for a read begun after some ``mark``; a read in
    progress or done that began after it serves every caller waiting for it, so the agents of a
    rollout that check it at once share one read instead of one each.
    """

    def __init__(self, service: UpgradeService, rollout: Rollout) -> None:
        self._service = service
        self._rollout = rollout
        self._stream = rollout_stream_id(rollout.plan.rollout_id)
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
            with self._changed:
                for event in recorded:
                    self._rollout.apply(event.event)
                self._latest = number
        finally:
            self._done_reading()
        return self._rollout

    def _done_reading(self) -> None:
        with self._changed:
            self._reading = False
            self._changed.notify_all()
