"""Events of rollouts (stream ``rollout-<id>``), cluster claims, packages and settings."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from dma_upgrade.engine.agent_events import FailoverRole
from dma_upgrade.engine.errors import InvalidInput, shown
from dma_upgrade.engine.events import Event
from dma_upgrade.engine.package_acceptance import ClusterAcceptance
from dma_upgrade.engine.packages import PackageManifest
from dma_upgrade.engine.upgrade_events import AgentUpgradePlan, UpgradeOptions

ROLLOUT_STREAMS = "rollout-"
"""The prefix of every rollout's stream (and of the claims stream), spelled here only: ``rollout_stream_id`` and
``rollout_id_of_stream`` go between a rollout id and its stream."""
CLAIMS_STREAM = f"{ROLLOUT_STREAMS}claims"
SETTINGS_STREAM = "settings"


class FailoverPolicy(StrEnum):
    """How a failover pair is upgraded (``default`` resolves to the setting when a rollout is planned)."""

    DEFAULT = "default"
    SIMULTANEOUS = "simultaneous"
    BACKUP_FIRST = "backup-first"
    BACKUP_FIRST_SWITCH_BACK = "backup-first-switch-back"

    @classmethod
    def parse(cls, text: str, *, allow_default: bool = True) -> FailoverPolicy:
        """The policy named ``text``; ``InvalidInput`` for another name, and for ``default`` where a policy must be
        named (the setting ``default`` resolves to). The one check of a policy's name: the CLI and the engine call
        it, the API's request model takes this type."""
        try:
            policy = cls(text)
        except ValueError:
            raise InvalidInput(f"unknown failover policy {shown(text)}; use " + "|".join(p.value for p in cls)) \
                from None
        if policy is cls.DEFAULT and not allow_default:
            raise InvalidInput("the default failover policy must name a policy, not 'default'")
        return policy


class StepPolicy(BaseModel):
    """Per-step timeout and retry budget, recorded on the rollout so a resumed engine honours them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    step_timeout_seconds: float = Field(default=1800.0, gt=0)
    retry_budget: int = Field(default=2, ge=0)
    backoff_seconds: float = Field(default=5.0, ge=0)


class PlannedAgent(BaseModel):
    """One agent of a rollout: its upgrade, its plan, and which agents must complete before it starts."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    address: str
    cluster: str | None
    current_version: str
    upgrade_id: UUID
    plan: AgentUpgradePlan
    failover_role: FailoverRole | None = None
    after: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    """What this agent's failover pair goes through (informational, unlike ``warnings``)."""


PACKAGE_STREAMS = "package-"
"""The prefix of every uploaded package's stream."""


def package_stream_id(sha256: str) -> str:
    """The event stream of one uploaded package."""
    return f"{PACKAGE_STREAMS}{sha256}"


def package_of_stream(stream_id: str) -> str:
    """The package's SHA-256 of a package's stream id."""
    return stream_id.removeprefix(PACKAGE_STREAMS)


def rollout_stream_id(rollout_id: UUID) -> str:
    """The event stream of one rollout."""
    return f"{ROLLOUT_STREAMS}{rollout_id}"


def rollout_id_of_stream(stream_id: str) -> str:
    """The rollout id (as text) of a rollout's stream id: what ``rollout_stream_id`` was given."""
    return stream_id.removeprefix(ROLLOUT_STREAMS)


class PackageUploaded(Event):
    """A package passed inspection and is stored under its SHA-256."""

    event_type = "PackageUploaded"

    sha256: str
    file_name: str
    size: int
    manifest: PackageManifest
    clusters: tuple[ClusterAcceptance, ...] = ()
    """Which systems accepted the package when it was uploaded, and why the others did not (empty: none could
    be judged, or uploaded before this was recorded)."""


class PackageUsed(Event):
    """The package executed an upgrade (an agent of ``rollout_id`` began installing it): it is marked completed
    and executes no other rollout, though that rollout may be continued with it."""

    event_type = "PackageUsed"

    rollout_id: UUID
    agent: str | None = None
    """The agent whose install began first (None: recorded when the rollout was planned, before it was kept)."""


class SettingChanged(Event):
    """A system setting (e.g. ``failover-default-policy``) was set."""

    event_type = "SettingChanged"

    key: str
    value: str


class RolloutClaimed(Event):
    """A rollout took its clusters and agents; another rollout touching them is refused until released."""

    event_type = "RolloutClaimed"

    rollout_id: UUID
    clusters: tuple[str, ...]
    agents: tuple[str, ...]


class RolloutReleased(Event):
    """A rollout ended and gave its clusters and agents back."""

    event_type = "RolloutReleased"

    rollout_id: UUID


class RolloutPlanned(Event):
    """The whole plan of a rollout, computed up front: who, in which order, visiting which states."""

    event_type = "RolloutPlanned"

    rollout_id: UUID
    package_sha256: str
    package_version: str
    options: UpgradeOptions
    upload_only: bool
    failover_policy: FailoverPolicy
    agents: tuple[PlannedAgent, ...]
    max_concurrent: int = Field(ge=1)
    max_errors: int = Field(ge=0)
    step_policy: StepPolicy = StepPolicy()
    start_at: datetime | None = None
    warnings: tuple[str, ...] = ()
    allow_partial_pair: bool = False
    """The operator let a member of a failover pair be upgraded without its partner (no switch-over)."""
    notes: tuple[str, ...] = ()
    """The agents' notes, each once: what the failover pairs go through."""
    skip_path_check: bool = False
    """The operator planned a jump that breaks the documented upgrade path (``engine.upgrade_paths``)."""
    reinstall: bool = False
    """The operator let the package install the version an agent runs already (``engine.version_choice``)."""
    allow_downgrade: bool = False
    """The operator let the package install a version older than an agent runs."""


LATE_START_TOLERANCE_SECONDS = 1.0
"""A scheduled start recorded more than this after its time is late: logged, and shown as late."""


def start_lateness_seconds(scheduled_at: datetime | None, started_at: datetime | None) -> float | None:
    """How late a start came after its scheduled time, in seconds (to the millisecond): 0 when on time (or early,
    by another engine's clock); None when it was not scheduled or either time is unknown."""
    if scheduled_at is None or started_at is None:
        return None
    return max(round((started_at - scheduled_at).total_seconds(), 3), 0.0)


class RolloutStarted(Event):
    """The rollout began driving its agents.

    ``scheduled_at`` is the plan's ``start_at`` (None: it started as soon as planned), ``started_at`` the
    engine's clock when it recorded the start. Both are None in events recorded before they were kept.
    """

    event_type = "RolloutStarted"

    scheduled_at: datetime | None = None
    started_at: datetime | None = None

    @property
    def lateness_seconds(self) -> float | None:
        """How late the scheduled start came (see ``start_lateness_seconds``)."""
        return start_lateness_seconds(self.scheduled_at, self.started_at)


class RolloutPaused(Event):
    """No new agent starts; agents in flight finish their current step."""

    event_type = "RolloutPaused"


class RolloutResumed(Event):
    """A paused rollout goes on."""

    event_type = "RolloutResumed"


class RolloutCancelled(Event):
    """The rollout was cancelled: agents not yet installing are cancelled, the others finish."""

    event_type = "RolloutCancelled"

    reason: str


class FailedAgentsRetried(Event):
    """The failed agents of the rollout are tried again."""

    event_type = "FailedAgentsRetried"

    agents: tuple[str, ...]


class RolloutContinued(Event):
    """An operator continued a failed or cancelled rollout with its package: the agents that did not complete run
    again. ``agents`` are those whose upgrade failed or was cancelled (each is taken up where it stopped, as a
    retry); agents never scheduled are scheduled and run."""

    event_type = "RolloutContinued"

    agents: tuple[str, ...]


class RolloutCompleted(Event):
    """Every agent ended; none failed beyond the error budget."""

    event_type = "RolloutCompleted"

    completed: int
    cancelled: int


class RolloutFailed(Event):
    """The rollout ended failed (error budget exceeded or agents failed)."""

    event_type = "RolloutFailed"

    reason: str


ROLLOUT_EVENTS: tuple[type[Event], ...] = (
    PackageUploaded, PackageUsed, SettingChanged, RolloutClaimed, RolloutReleased, RolloutPlanned,
    RolloutStarted, RolloutPaused, RolloutResumed, RolloutCancelled, FailedAgentsRetried,
    RolloutCompleted, RolloutFailed, RolloutContinued,
)
