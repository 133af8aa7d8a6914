"""One agent's upgrade as an aggregate: decisions return events, state is only a fold of events."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from dma_upgrade.engine.aggregate import Aggregate
from dma_upgrade.engine.errors import InvalidTransition
from dma_upgrade.engine.events import Event
from dma_upgrade.engine.upgrade_events import (
    AgentUpgradeCancelled,
    AgentUpgradeCompleted,
    AgentUpgradeFailed,
    AgentUpgradePlan,
    AgentUpgradeResumed,
    AgentUpgradeRetried,
    AgentUpgradeScheduled,
    InstallPhaseReported,
    ManualStartAwaited,
    Step,
    StepDelayed,
    StepDoubtResolved,
    StepFailed,
    StepInDoubt,
    StepOrder,
    StepStarted,
    StepStatusLearned,
    StepSucceeded,
)
from dma_upgrade.engine.upgrade_machine import STOPPED_STATES, MachineFlags, UpgradeState, next_state

ENTERED_ON_START = {Step.INSTALL: "install", Step.REBOOT: "reboot"}
"""Steps whose state is entered when they begin (the state means "in progress")."""
ENTERED_ON_SUCCESS = {Step.UPLOAD: "upload", Step.STOP_SNMP: "stop_snmp", Step.SWITCH_OVER: "switch_over"}
"""Steps whose state is entered when they are done."""
TRIGGER_STATES = {"install": UpgradeState.INSTALLING, "reboot": UpgradeState.REBOOTING,
                  "upload": UpgradeState.UPLOADED, "stop_snmp": UpgradeState.SNMP_STOPPED,
                  "switch_over": UpgradeState.SWITCHED_OVER}
"""The state each step trigger enters (those triggers have one destination whatever the options)."""


UPGRADE_STREAMS = "upgrade-"
"""The prefix of every agent upgrade's stream."""


def upgrade_stream_id(upgrade_id: UUID) -> str:
    """The event stream of one agent upgrade."""
    return f"{UPGRADE_STREAMS}{upgrade_id}"


def upgrade_id_of_stream(stream_id: str) -> str:
    """The upgrade id (as text) of an upgrade's stream id."""
    return stream_id.removeprefix(UPGRADE_STREAMS)


class AgentUpgrade(Aggregate):
    """The state of one agent's upgrade, rebuilt from its events; decisions never mutate it."""

    def __init__(self) -> None:
        self.version = 0
        self.state = UpgradeState.SCHEDULED
        self.scheduled: AgentUpgradeScheduled | None = None
        self.done_steps: list[Step] = []
        self.step_in_progress: Step | None = None
        self.attempts: dict[Step, int] = {}
        self.attempts_this_round: dict[Step, int] = {}
        self.install_phase: str | None = None
        self.waiting_until: datetime | None = None
        self.last_error: str | None = None
        self.resume_state: UpgradeState | None = None
        self.version_after: str | None = None
        self.manual_start_needed = False
        self.in_doubt = False
        self.status_learned: str | None = None
        self.awaiting_manual_start = False
        self.manual_start_seen = False
        self.retries = 0
        self.resumes = 0

    # -- derived facts -------------------------------------------------------------------------

    @property
    def plan(self) -> AgentUpgradePlan:
        if self.scheduled is None:
            raise InvalidTransition("none", "use an upgrade", "it was never scheduled")
        return self.scheduled.plan

    @property
    def flags(self) -> MachineFlags:
        plan = self.plan
        return MachineFlags(stops_snmp=plan.stops_snmp, switches_over=plan.switch_over,
                            reboots=plan.reboots, upload_only=plan.upload_only,
                            legacy_switch_first=plan.switch_over
                            and plan.step_order is StepOrder.LEGACY_SWITCH_BEFORE_REBOOT)

    @property
    def next_step(self) -> Step | None:
        """The first planned step not yet done (None when all are done)."""
        return next((s for s in self.plan.steps if s not in self.done_steps), None)

    @property
    def is_failed(self) -> bool:
        return self.state is UpgradeState.FAILED

    def idempotency_key(self, step: Step, attempt: int) -> str:
        """The key an agent dedupes this attempt of ``step`` on."""
        assert self.scheduled is not None
        return f"{self.scheduled.upgrade_id}:{step.value}:{attempt}"

    # -- decisions -----------------------------------------------------------------------------

    def schedule(self, scheduled: AgentUpgradeScheduled) -> list[Event]:
        """Create the upgrade."""
        if self.scheduled is not None:
            raise InvalidTransition(self.state, "schedule", "the upgrade exists already")
        return [scheduled]

    def start_step(self, step: Step) -> list[Event]:
        """Record the intent to perform ``step`` on the agent."""
        self._require_move_allowed(f"start {step.value}")
        if self.step_in_progress is not None:
            raise InvalidTransition(self.state, f"start {step.value}",
                                    f"step {self.step_in_progress.value} is still in progress")
        if step != self.next_step:
            expected = self.next_step.value if self.next_step else "none (all steps done)"
            raise InvalidTransition(self.state, f"start {step.value}", f"the next step is {expected}")
        trigger = ENTERED_ON_START.get(step)
        if trigger is not None and self.state != TRIGGER_STATES[trigger]:
            self._require_trigger(trigger, f"start {step.value}")
        attempt = self.attempts.get(step, 0) + 1
        return [StepStarted(step=step, attempt=attempt, idempotency_key=self.idempotency_key(step, attempt))]

    def finish_step(self, step: Step, version_after: str | None = None) -> list[Event]:
        """Record that the agent reported ``step`` done."""
        self._require_in_progress(step, "finish")
        self._require_trigger(ENTERED_ON_SUCCESS.get(step), f"finish {step.value}")
        return [StepSucceeded(step=step, attempt=self.attempts[step], version_after=version_after)]

    def fail_attempt(self, step: Step, error: str) -> list[Event]:
        """Record that one attempt of ``step`` failed (the step may be attempted again)."""
        self._require_in_progress(step, "fail an attempt of")
        return [StepFailed(step=step, attempt=self.attempts[step], error=error)]

    def delay_step(self, step: Step, due_at: datetime, reason: str) -> list[Event]:
        """Arm a timer: ``step`` is not to start before ``due_at``."""
        self._require_move_allowed(f"delay {step.value}")
        if self.step_in_progress is not None or step != self.next_step:
            raise InvalidTransition(self.state, f"delay {step.value}", "it is not the next step")
        return [StepDelayed(step=step, due_at=due_at, reason=reason)]

    def mark_in_doubt(self, step: Step, reason: str) -> list[Event]:
        """Record that the outcome of ``step`` is unknown (no answer, or the agent could not be asked)."""
        self._require_in_progress(step, "doubt")
        return [StepInDoubt(step=step, attempt=self.attempts[step], reason=reason)]

    def learn_status(self, step: Step, status: str) -> list[Event]:
        """Record what the agent said of ``step``'s key when asked (not ``failed``: see ``fail_attempt``)."""
        self._require_in_progress(step, "learn the status of")
        return [StepStatusLearned(step=step, attempt=self.attempts[step], status=status)]

    def resolve_doubt(self, applied: bool, version_after: str | None = None) -> list[Event]:
        """An operator's decision on the step in doubt: applied (done on their word) or not applied."""
        step = self.step_in_progress
        if step is None or not self.in_doubt or self.state in STOPPED_STATES:
            raise InvalidTransition(self.state, "resolve a step in doubt", "no step is in doubt")
        if applied:
            self._require_trigger(ENTERED_ON_SUCCESS.get(step), f"resolve {step.value} as applied")
        return [StepDoubtResolved(step=step, attempt=self.attempts[step], applied=applied,
                                  version_after=version_after if applied else None)]

    def await_manual_start(self, agent: str) -> list[Event]:
        """Record that the switch-over waits for an operator to start ``agent`` (Auto Start off)."""
        self._require_move_allowed("wait for a manual start")
        if self.next_step is not Step.SWITCH_OVER or self.step_in_progress is not None \
                or not self.plan.awaits_manual_start:
            raise InvalidTransition(self.state, "wait for a manual start", "no switch-over waits for one")
        return [ManualStartAwaited(agent=agent)]

    def resume_after_restart(self) -> list[Event]:
        """Record that a newly started engine takes this unfinished upgrade over."""
        self._require_move_allowed("resume")
        return [AgentUpgradeResumed(state=self.state.value, step_in_flight=self.step_in_progress)]

    @property
    def has_begun(self) -> bool:
        """Whether any step was ever attempted."""
        return bool(self.attempts)

    def report_phase(self, phase: str, phase_index: int, phase_count: int) -> list[Event]:
        """Record progress inside the installation."""
        if self.state != UpgradeState.INSTALLING or self.step_in_progress != Step.INSTALL:
            raise InvalidTransition(self.state, "report an install phase", "no installation is running")
        return [InstallPhaseReported(phase=phase, phase_index=phase_index, phase_count=phase_count)]

    def complete(self) -> list[Event]:
        """Finish the upgrade once every planned step is done."""
        self._require_move_allowed("complete")
        pending = self.step_in_progress or self.next_step
        if pending is not None:
            raise InvalidTransition(self.state, "complete", f"step {pending.value} is not done")
        self._require_trigger("complete", "complete")
        return [AgentUpgradeCompleted(version_after=self.version_after,
                                      manual_start_needed=not self.plan.options.auto_start
                                      and self.plan.stops_dataminer and not self.manual_start_seen)]

    def fail(self, reason: str) -> list[Event]:
        """Stop the upgrade as failed (on the step in progress, if any)."""
        self._require_trigger("fail", "fail")
        return [AgentUpgradeFailed(step=self.step_in_progress, reason=reason)]

    def retry(self) -> list[Event]:
        """Resume a failed upgrade where it failed, or a cancelled one where it was cancelled (its rollout is
        continued)."""
        if self.state not in (UpgradeState.FAILED, UpgradeState.CANCELLED) or self.resume_state is None:
            raise InvalidTransition(self.state, "retry", "only a failed or cancelled upgrade can be retried")
        self._require_trigger("retry", "retry")
        return [AgentUpgradeRetried(resume_state=self.resume_state.value)]

    def cancel(self, reason: str) -> list[Event]:
        """Cancel the upgrade; refused once the installation has begun."""
        if self.step_in_progress is not None and self.state != UpgradeState.FAILED:
            raise InvalidTransition(self.state, "cancel",
                                    f"step {self.step_in_progress.value} is in progress")
        self._require_trigger("cancel", "cancel")
        return [AgentUpgradeCancelled(reason=reason)]

    def _require_move_allowed(self, attempted: str) -> None:
        if self.scheduled is None:
            raise InvalidTransition("none", attempted, "the upgrade was never scheduled")
        if self.state in STOPPED_STATES:
            raise InvalidTransition(self.state, attempted)

    def _require_in_progress(self, step: Step, verb: str) -> None:
        if self.step_in_progress != step:
            running = self.step_in_progress.value if self.step_in_progress else "no step"
            raise InvalidTransition(self.state, f"{verb} {step.value}", f"{running} is in progress")

    def _require_trigger(self, trigger: str | None, attempted: str) -> None:
        if trigger is not None and next_state(self.state, trigger, self.flags, self.resume_state) is None:
            raise InvalidTransition(self.state, attempted)

    # -- the fold ------------------------------------------------------------------------------

    def apply(self, event: Event) -> None:
        """Apply one event of this upgrade's stream."""
        self.version += 1
        match event:
            case AgentUpgradeScheduled():
                self.scheduled = event
            case StepStarted(step=step, attempt=attempt):
                self.waiting_until = None
                self.in_doubt = False
                self.status_learned = None
                if step is Step.SWITCH_OVER and self.awaiting_manual_start:
                    self.awaiting_manual_start = False
                    self.manual_start_seen = True
                self.step_in_progress = step
                self.attempts[step] = attempt
                self.attempts_this_round[step] = self.attempts_this_round.get(step, 0) + 1
                trigger = ENTERED_ON_START.get(step)
                if trigger is not None and self.state != TRIGGER_STATES[trigger]:
                    self._move(trigger)
            case StepSucceeded(step=step, version_after=version_after) | \
                    StepDoubtResolved(step=step, applied=True, version_after=version_after):
                self._succeed(step, version_after)
            case StepDoubtResolved():
                self.in_doubt = False
                self.status_learned = "unknown"
            case StepInDoubt(reason=reason):
                self.in_doubt = True
                self.status_learned = None
                self.last_error = reason
            case StepStatusLearned(status=status):
                self.in_doubt = False
                self.status_learned = status
            case ManualStartAwaited():
                self.awaiting_manual_start = True
            case StepFailed(error=error):
                self.step_in_progress = None
                self.in_doubt = False
                self.status_learned = None
                self.last_error = error
            case StepDelayed(due_at=due_at):
                self.waiting_until = due_at
            case InstallPhaseReported(phase=phase):
                self.install_phase = phase
            case AgentUpgradeCompleted(manual_start_needed=manual):
                self._move("complete")
                self.manual_start_needed = manual
            case AgentUpgradeFailed(reason=reason):
                self.resume_state = self.state
                self._move("fail")
                self.step_in_progress = None
                self.in_doubt = False
                self.status_learned = None
                self.last_error = reason
            case AgentUpgradeRetried():
                self._move("retry")
                self.resume_state = None
                self.retries += 1
                self.attempts_this_round = {}
            case AgentUpgradeResumed():
                self.resumes += 1
            case AgentUpgradeCancelled():
                if self.state is not UpgradeState.FAILED:  # a failed one resumes where it failed
                    self.resume_state = self.state
                self._move("cancel")
                self.step_in_progress = None
            case _:
                raise InvalidTransition(self.state, f"apply {type(event).__name__}", "not an upgrade event")

    def _succeed(self, step: Step, version_after: str | None) -> None:
        trigger = ENTERED_ON_SUCCESS.get(step)
        if trigger is not None:
            self._move(trigger)
        self.done_steps.append(step)
        self.step_in_progress = None
        self.in_doubt = False
        self.status_learned = None
        self.install_phase = None
        if version_after is not None:
            self.version_after = version_after

    def _move(self, trigger: str) -> None:
        dest = next_state(self.state, trigger, self.flags, self.resume_state)
        if dest is None:
            raise InvalidTransition(self.state, trigger, "the stored history breaks the state table")
        self.state = dest

