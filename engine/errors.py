"""The one error tree of dma-upgrade.

Every error the product raises on purpose derives from ``DmaUpgradeError``; the CLI and the HTTP API
map these classes to exit codes and status codes in one table each.

    DmaUpgradeError
    ├── ConcurrencyConflict        a stale expected version; nothing was written
    ├── LeaseLost                  another engine process took over work this one was driving
    ├── InvalidTransition          a command the state machine does not allow now; nothing appended
    ├── EventStoreError
    │   ├── UnknownEventType       a stored event whose type no model is registered for
    │   ├── EventDecodeError       a stored payload that does not parse (names the position)
    │   ├── DuplicateEventId       event ids already stored elsewhere (not a clean retry)
    │   ├── StoreUnavailable       the database cannot be reached
    │   └── SchemaNotMigrated      the database lacks the schema; run the migrations
    ├── NotFound                   an unknown agent, cluster, package, rollout or projection
    ├── Conflict                   a reused package, a busy cluster, an agent in two rollouts
    ├── InvalidInput               a malformed version, package, option or time
    └── AgentStepFailed            an agent could not perform a step (it said so: the step is not applied)
        └── AgentOutcomeUnknown    no answer that tells: the step is in doubt until the agent is asked
            └── AgentUnreachable   the agent did not answer
"""

from __future__ import annotations


class DmaUpgradeError(Exception):
    """Base of every deliberate error; ``str(error)`` is a one-line message for people."""


class ConcurrencyConflict(DmaUpgradeError):
    """The stream moved on since it was read: the append was refused and wrote nothing."""

    def __init__(self, stream_id: str, expected_version: int, actual_version: int) -> None:
        super().__init__(
            f"concurrency conflict on stream {stream_id!r}: expected version {expected_version}, "
            f"found {actual_version}"
        )
        self.stream_id = stream_id
        self.expected_version = expected_version
        self.actual_version = actual_version


class LeaseLost(DmaUpgradeError):
    """This process no longer holds the lease on a piece of work: it expired, or another process took it over."""

    def __init__(self, name: str) -> None:
        super().__init__(f"the lease on {name} is no longer held by this engine process")
        self.name = name


class InvalidTransition(DmaUpgradeError):
    """A command the state machine does not allow in the current state."""

    def __init__(self, current_state: str, attempted: str, detail: str = "") -> None:
        message = f"cannot {attempted} from state {current_state}"
        super().__init__(f"{message}: {detail}" if detail else message)
        self.current_state = current_state
        self.attempted = attempted


class EventStoreError(DmaUpgradeError):
    """A problem with the stored events or the store itself."""


class UnknownEventType(EventStoreError):
    """A stored event names a type that no registered model has."""

    def __init__(self, event_type: str, position: int | None = None) -> None:
        where = f" at position {position}" if position is not None else ""
        super().__init__(f"unknown event type {event_type!r}{where}")
        self.event_type = event_type
        self.position = position


class EventDecodeError(EventStoreError):
    """A stored payload does not parse as its event model."""

    def __init__(self, position: int | None, event_type: str, reason: str) -> None:
        where = f"at position {position}" if position is not None else "(not stored)"
        super().__init__(f"stored event {where} ({event_type}) does not parse: {reason}")
        self.position = position
        self.event_type = event_type


class DuplicateEventId(EventStoreError):
    """Some event ids of an append are stored already, but not as that same append."""


class StoreUnavailable(EventStoreError):
    """The database cannot be reached."""


class SchemaNotMigrated(EventStoreError):
    """The database has no (or an outdated) schema."""


class NotFound(DmaUpgradeError):
    """Something named by the caller does not exist."""


class Conflict(DmaUpgradeError):
    """The request contradicts what already happened (reused package, busy cluster)."""


class InvalidInput(DmaUpgradeError):
    """The input is malformed or breaks a documented rule."""


class AgentStepFailed(DmaUpgradeError):
    """An agent could not perform a step (it refused, broke, timed out or could not be reached)."""

    def __init__(self, agent: str, step: str, reason: str) -> None:
        super().__init__(f"agent {agent}: {step} failed: {reason}")
        self.agent = agent
        self.step = step
        self.reason = reason


class AgentOutcomeUnknown(AgentStepFailed):
    """The agent's answer (or its silence) does not tell whether it applied the step: a timeout, a cut
    connection, an answer that broke off. The step is in doubt until the agent is asked."""


class AgentUnreachable(AgentOutcomeUnknown):
    """The agent did not answer at all."""
