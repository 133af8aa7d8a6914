"""Ports: what the engine needs from the outside world, with their contracts.

Implementations live in ``adapters/``; in-memory ones used by tests follow the same contracts.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Protocol
from uuid import UUID

from dma_upgrade.engine.events import NewEvent, RecordedEvent, StoredRecord
from dma_upgrade.engine.packages import AgentFacts
from dma_upgrade.engine.upgrade_events import Step, UpgradeOptions


class Clock(Protocol):
    """The only source of time for the core."""

    def now(self) -> datetime:
        """The current time, timezone-aware, in UTC."""
        ...


class IdFactory(Protocol):
    """The only source of new identifiers for the core."""

    def new_id(self) -> UUID:
        """A new, unique id."""
        ...


@dataclass(frozen=True)
class AppendResult:
    """Where an append landed: global positions of its events and the stream's new version."""

    positions: tuple[int, ...]
    stream_version: int
    duplicate: bool = False


class EventStore(Protocol):
    """An append-only log of events, one sequence per stream and one global order.

    Semantics every implementation keeps:

    - ``append`` is atomic: all events are stored or none. ``expected_version`` is the number of
      events the caller saw in the stream; if the stream holds another number, ``ConcurrencyConflict``
      is raised and nothing is written. Stream versions start at 1 and have no gaps.
    - Appending event ids that are already stored, as the same events of the same stream (a retried
      append), writes nothing and returns the original positions with ``duplicate=True``.
    - Global positions start at 1, have no gaps, and their order equals commit order: a reader that
      reads ``after=p`` repeatedly never skips an event that commits later.
    - Each stored event carries the SHA-256 chain hash of ``engine.hashchain``.
    - ``recorded_at`` comes from the store's clock, in UTC.
    """

    def append(self, stream_id: str, expected_version: int, events: Sequence[NewEvent]) -> AppendResult:
        """Append events to a stream if it holds exactly ``expected_version`` events."""
        ...

    def read_stream(self, stream_id: str, after_version: int = 0) -> list[RecordedEvent]:
        """The events of one stream after ``after_version``, in version order (empty for an unknown stream)."""
        ...

    def read_all(self, after: int = 0, page_size: int = 1000) -> Iterator[RecordedEvent]:
        """Events with position > ``after`` in global order, fetched in pages (constant memory)."""
        ...

    def read_records(self, after: int = 0, page_size: int = 1000) -> Iterator[StoredRecord]:
        """Like ``read_all`` but undecoded, as stored (for the audit trail and verification)."""
        ...

    def read_category(self, prefix: str) -> Iterator[RecordedEvent]:
        """Events of every stream whose id starts with ``prefix``, in global order."""
        ...

    def head_position(self) -> int:
        """The position of the last stored event (0 when empty)."""
        ...


@dataclass(frozen=True)
class AgentAddress:
    """How the engine reaches one agent: its name and its address, ``host[:port]`` (``engine.addresses``) as
    registered. An address registered before that rule may be other text: a gateway refuses to contact it."""

    name: str
    address: str


@dataclass(frozen=True)
class PackageRef:
    """The package a step works with, and the options of the upgrade the step is part of (sent with every step)."""

    sha256: str
    version: str
    options: UpgradeOptions = field(default_factory=UpgradeOptions)
    web_only: bool = False
    """A Web package: the install updates the web components only, DataMiner keeps running and its version."""


@dataclass(frozen=True)
class StepOutcome:
    """What an agent reports when a step is done (the version it runs after an install)."""

    version_after: str | None = None


class StepStatus(StrEnum):
    """What an agent knows of one idempotency key."""

    UNKNOWN = "unknown"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True)
class AgentIdentity:
    """What an agent says about itself when asked by address."""

    name: str
    address: str
    cluster: str | None
    version: str
    facts: AgentFacts


class PhaseReporter(Protocol):
    """Called by a gateway as an installation reaches each phase of the action script, and again with the phase it
    is still at whenever the agent says it is alive but reports nothing new (a keep-alive): a repeated report is
    not acknowledged to the agent, and lets a reporter that held a phase back record it in time."""

    def __call__(self, phase: str, index: int, count: int) -> None: ...


class AgentGateway(Protocol):
    """The agents' side: every operation the engine asks of a DataMiner Agent.

    Semantics every implementation keeps:

    - ``perform`` blocks until the step is done and returns its outcome, or raises
      ``AgentStepFailed`` (``AgentUnreachable`` when the agent did not answer).
    - Every call carries an idempotency key; the agent applies a key at most once. Performing a key
      that already succeeded returns the first outcome without applying the step again.
    - ``step_status`` tells what the agent knows of a key, so a recovering engine can learn the
      outcome of a step whose start was recorded but whose end was not, before re-sending anything.
    - An agent's version changes only after a successful install.
    """

    def perform(self, agent: AgentAddress, step: Step, idempotency_key: str, package: PackageRef,
                on_phase: PhaseReporter | None = None) -> StepOutcome:
        """Perform ``step`` on ``agent`` once for ``idempotency_key``."""
        ...

    def step_status(self, agent: AgentAddress, idempotency_key: str) -> StepStatus:
        """What the agent knows of ``idempotency_key``."""
        ...

    def identify(self, address: str) -> AgentIdentity:
        """Ask the agent at ``address`` (``host[:port]``) who it is (name, cluster, version, facts)."""
        ...
