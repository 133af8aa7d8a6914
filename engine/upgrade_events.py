"""Events of one agent's upgrade (stream ``upgrade-<id>``) and the options that shape it."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from dma_upgrade.engine.events import Event


class Step(StrEnum):
    """An operation the engine asks an agent to perform (``AgentUpgradePlan.steps`` gives their order)."""

    UPLOAD = "upload"
    STOP_SNMP = "stop_snmp"
    INSTALL = "install"
    SWITCH_OVER = "switch_over"
    REBOOT = "reboot"
    START = "start"


class UpgradeOptions(BaseModel):
    """The five System Center upgrade options, with their documented defaults."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    extract_all: bool = True
    delayed_start: bool = True
    auto_start: bool = True
    stop_snmp: bool = True
    reboot: bool = False


class StepOrder(StrEnum):
    """Where a pair member's switch-over comes among its steps."""

    SWITCH_WHEN_RUNNING = "switch-when-running"
    """install → (reboot) → (start) → switch over: activity moves only to an agent that runs."""
    LEGACY_SWITCH_BEFORE_REBOOT = "legacy-switch-before-reboot"
    """install → switch over → (reboot) → (start): how plans were made before the safety invariants
    (docs/invariants.md); kept only so that stored histories still fold. New plans never use it."""


class AgentUpgradePlan(BaseModel):
    """What one agent's upgrade will do: the options plus what the rollout decided for this agent."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    options: UpgradeOptions = UpgradeOptions()
    upload_only: bool = False
    switch_over: bool = False
    delayed_start_seconds: int = Field(default=0, ge=0)
    step_order: StepOrder = StepOrder.SWITCH_WHEN_RUNNING
    web_only: bool = False
    """A Web package: only the web components are installed, with DataMiner running (no SNMP stop, reboot,
    start or switch-over) and its version unchanged."""

    @property
    def stops_dataminer(self) -> bool:
        """Whether the install stops DataMiner (a Full package's; not upload-only or web-only runs)."""
        return not self.upload_only and not self.web_only

    @property
    def stops_snmp(self) -> bool:
        return self.options.stop_snmp and self.stops_dataminer

    @property
    def reboots(self) -> bool:
        return self.options.reboot and self.stops_dataminer

    @property
    def steps(self) -> tuple[Step, ...]:
        """The steps this upgrade runs, in order: a switch-over only once the agent runs the new version
        (installed, rebooted if the rollout reboots, and started, by the engine or by hand). A web-only run
        uploads and installs, nothing else."""
        if self.upload_only:
            return (Step.UPLOAD,)
        if self.web_only:
            return (Step.UPLOAD, Step.INSTALL)
        steps = [Step.UPLOAD]
        if self.options.stop_snmp:
            steps.append(Step.STOP_SNMP)
        steps.append(Step.INSTALL)
        legacy = self.step_order is StepOrder.LEGACY_SWITCH_BEFORE_REBOOT
        if self.switch_over and legacy:
            steps.append(Step.SWITCH_OVER)
        if self.options.reboot:
            steps.append(Step.REBOOT)
        if self.options.auto_start:
            steps.append(Step.START)
        if self.switch_over and not legacy:
            steps.append(Step.SWITCH_OVER)
        return tuple(steps)

    @property
    def awaits_manual_start(self) -> bool:
        """Whether the switch-over waits for an operator to start the agent (Auto Start off)."""
        return self.switch_over and not self.options.auto_start and not self.upload_only


class AgentUpgradeScheduled(Event):
    """An agent's upgrade was created by a rollout (or on its own) and waits for its first step.

    Schema history: version 1 plans switched over before the reboot and start; version 2 records
    ``plan.step_order`` (a version 1 payload is upcast to the legacy order, so stored histories fold).
    """

    event_type = "AgentUpgradeScheduled"
    schema_version = 2

    upgrade_id: UUID
    rollout_id: UUID | None = None
    agent: str
    package_sha256: str
    target_version: str
    plan: AgentUpgradePlan


class StepAttemptEvent(Event):
    """Base of the events about one attempt of ``step`` (attempts are counted from 1 per step)."""

    step: Step
    attempt: int = Field(ge=1)


class StepStarted(StepAttemptEvent):
    """Intent: the engine is about to ask the agent to perform ``step`` (attempt ``attempt``)."""

    event_type = "StepStarted"

    idempotency_key: str


class StepSucceeded(StepAttemptEvent):
    """Outcome: the agent reported ``step`` done."""

    event_type = "StepSucceeded"

    version_after: str | None = None


class StepFailed(StepAttemptEvent):
    """Outcome: one attempt of ``step`` failed; the step may be attempted again."""

    event_type = "StepFailed"

    error: str


class StepDelayed(Event):
    """A timer: ``step`` waits until ``due_at`` (Delayed Start, or a retry backing off)."""

    event_type = "StepDelayed"

    step: Step
    due_at: datetime
    reason: str


class StepInDoubt(StepAttemptEvent):
    """The outcome of ``step`` (attempt ``attempt``) is unknown: the agent did not answer (a timeout, a cut
    connection), or could not be asked. Nothing is sent for the step again before the agent is asked."""

    event_type = "StepInDoubt"

    reason: str


class StepStatusLearned(StepAttemptEvent):
    """The agent, asked by the idempotency key of ``step`` (attempt ``attempt``), said what it knows of it:
    ``unknown`` (never applied), ``running`` or ``succeeded``; the step is then sent again under the same
    key (the agent applies a key once, so it returns the first outcome or applies it now)."""

    event_type = "StepStatusLearned"

    status: str


class StepDoubtResolved(StepAttemptEvent):
    """An operator decided a step in doubt: ``applied`` records it done on their word; not applied lets
    the engine send it again under the same key."""

    event_type = "StepDoubtResolved"

    applied: bool
    version_after: str | None = None


class ManualStartAwaited(Event):
    """Auto Start is off: the agent was left stopped and its switch-over waits for an operator to start it."""

    event_type = "ManualStartAwaited"

    agent: str


class InstallPhaseReported(Event):
    """Progress inside Installing: the agent's installer reached ``phase``."""

    event_type = "InstallPhaseReported"

    phase: str
    phase_index: int = Field(ge=0)
    phase_count: int = Field(ge=1)


class AgentUpgradeResumed(Event):
    """An engine that started anew took this upgrade over where the last one left it."""

    event_type = "AgentUpgradeResumed"

    state: str
    step_in_flight: Step | None = None


class AgentUpgradeCompleted(Event):
    """Every planned step is done; ``manual_start_needed`` when Auto Start was off."""

    event_type = "AgentUpgradeCompleted"

    version_after: str | None = None
    manual_start_needed: bool = False


class AgentUpgradeFailed(Event):
    """The upgrade stopped on ``step`` (None when it failed before any step) for ``reason``."""

    event_type = "AgentUpgradeFailed"

    step: Step | None = None
    reason: str


class AgentUpgradeRetried(Event):
    """A failed upgrade resumes at the state it failed in."""

    event_type = "AgentUpgradeRetried"

    resume_state: str


class AgentUpgradeCancelled(Event):
    """The upgrade was cancelled before its installation began."""

    event_type = "AgentUpgradeCancelled"

    reason: str


UPGRADE_EVENTS: tuple[type[Event], ...] = (
    AgentUpgradeScheduled, StepStarted, StepSucceeded, StepFailed, StepDelayed, InstallPhaseReported,
    AgentUpgradeCompleted, AgentUpgradeFailed, AgentUpgradeRetried, AgentUpgradeCancelled, AgentUpgradeResumed,
    StepInDoubt, StepStatusLearned, StepDoubtResolved, ManualStartAwaited,
)


def upcast_upgrade_scheduled_v1(payload: dict[str, Any]) -> dict[str, Any]:
    """AgentUpgradeScheduled v1 -> v2: its plan switched over before the reboot and start."""
    plan = dict(payload.get("plan") or {})
    plan["step_order"] = StepOrder.LEGACY_SWITCH_BEFORE_REBOOT.value
    return {**payload, "plan": plan}


UPGRADE_UPCASTERS = {("AgentUpgradeScheduled", 1): upcast_upgrade_scheduled_v1}
