"""The one error tree of dma-upgrade.

Every error the product raises on purpose derives from ``DmaUpgradeError``; the CLI and the HTTP API answer
each class with one row of one table (``adapters/errors.py``: its HTTP status, its kind and its exit code).
Each class of the product is drawn once: here, or (the errors only the edges raise) in the subtree drawn in
``adapters/errors.py``. A class defined outside this module names its module.

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
    │   ├── InvalidVersion         a text that is no DataMiner version (engine/versions.py)
    │   ├── PackageRejected        a package that is not accepted, and why (engine/packages.py)
    │   └── UpgradePathRefused     a jump off the documented upgrade path (engine/upgrade_paths.py)
    └── AgentStepFailed            an agent could not perform a step (it said so: the step is not applied)
        └── AgentOutcomeUnknown    no answer that tells: the step is in doubt until the agent is asked
            └── AgentUnreachable   the agent did not answer

Two helpers keep messages one line and short: ``shown`` quotes a text a caller gave (cut, control characters
escaped), ``describe_validation`` names the invalid fields of a pydantic validation error.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError


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


def shown(text: str, limit: int = 40) -> str:
    """``text`` quoted for a one-line message, cut to ``limit`` characters (control characters escaped)."""
    return repr(text if len(text) <= limit else text[:limit] + "…")


DESCRIBED_PROBLEMS = 10
"""How many invalid fields a validation message names; it counts the rest."""


def describe_validation(error: ValidationError | Sequence[Mapping[str, Any]]) -> str:
    """The problems of a pydantic validation error (or of its ``errors()``, e.g. FastAPI's) as one line:
    ``field 'where': what`` for each of the first ``DESCRIBED_PROBLEMS``, then how many more (the input itself is
    left out; a problem of the whole value has no ``field`` part)."""
    problems = error.errors(include_url=False, include_input=False) if isinstance(error, ValidationError) else error
    parts = []
    for problem in problems[:DESCRIBED_PROBLEMS]:
        message = str(problem.get("msg", "invalid")).removeprefix("Value error, ")
        loc = problem.get("loc", ())
        where = ".".join(str(part) for part in loc) if isinstance(loc, list | tuple) else str(loc)
        parts.append(f"field {shown(where, 80)}: {message}" if where else message)
    if len(problems) > DESCRIBED_PROBLEMS:
        parts.append(f"and {len(problems) - DESCRIBED_PROBLEMS} more")
    return "; ".join(parts) or "the input is not valid"
