"""Events of one agent's upgrade (stream ``upgrade-<id>``) and the options that shape it."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from engine.events import Event


class Step(StrEnum):
    """An operation the engine asks an agent to perform, in the order they happen."""

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


class AgentUpgradePlan(BaseModel):
    """What one agent's upgrade will do: the options plus what the rollout decided for this agent."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    options: UpgradeOptions = UpgradeOptions()
    upload_only: bool = False
    switch_over: bool = False
    delayed_start_seconds: int = Field(default=0, ge=0)

    @property
    def steps(self) -> tuple[Step, ...]:
        """The steps this upgrade runs, in order."""
        if self.upload_only:
            return (Step.UPLOAD,)
        steps = [Step.UPLOAD]
        if self.options.stop_snmp:
            steps.append(Step.STOP_SNMP)
        steps.append(Step.INSTALL)
        if self.switch_over:
            steps.append(Step.SWITCH_OVER)
        if self.options.reboot:
            steps.append(Step.REBOOT)
        if self.options.auto_start:
            steps.append(Step.START)
        return tuple(steps)


class AgentUpgradeScheduled(Event):
    """An agent's upgrade was created by a rollout (or on its own) and waits for its first step."""

    event_type = "AgentUpgradeScheduled"

    upgrade_id: UUID
    rollout_id: UUID | None = None
    agent: str
    package_sha256: str
    target_version: str
    plan: AgentUpgradePlan


class StepStarted(Event):
    """Intent: the engine is about to ask the agent to perform ``step`` (attempt ``attempt``)."""

    event_type = "StepStarted"

    step: Step
    attempt: int = Field(ge=1)
    idempotency_key: str


class StepSucceeded(Event):
    """Outcome: the agent reported ``step`` done."""

    event_type = "StepSucceeded"

    step: Step
    attempt: int = Field(ge=1)
    version_after: str | None = None


class StepFailed(Event):
    """Outcome: one attempt of ``step`` failed; the step may be attempted again."""

    event_type = "StepFailed"

    step: Step
    attempt: int = Field(ge=1)
    error: str


class StepDelayed(Event):
    """A timer: ``step`` waits until ``due_at`` (Delayed Start, or a retry backing off)."""

    event_type = "StepDelayed"

    step: Step
    due_at: datetime
    reason: str


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
)
