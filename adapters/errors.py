"""The errors only the edges raise, and the one table by which the API and the CLI answer every error.

The product's error tree is drawn in ``engine/errors.py``; these classes hang below it, drawn here with the
engine's classes they derive from:

    DmaUpgradeError
    ├── EventStoreError
    │   └── StoreUnavailable
    │       └── TokenFileUnreadable    the API's token file cannot be used: no call can be authenticated
    ├── InvalidInput
    │   └── PayloadTooLarge            a request body over the configured limit
    ├── ProjectionStopped              a projection's handler failed on an event; it stays at the event before it
    ├── ServerBusy                     every slot of a capped kind of request is taken: try again shortly
    ├── ServerUnreachable              the API server named by ``--server`` does not answer (the CLI's)
    └── ServerRefusal                  an error answer of that server (the CLI's): answered as the kind it names

Each kind of error has one row of ``KINDS``: the ``error`` the API answers with, its HTTP status and the CLI's
exit code. ``OUTCOMES`` gives every class of the tree its kind; a ``ServerRefusal`` has the kind the server
named, so an error exits with the same code whether the CLI ran the command here or through the API. Two exit
codes are no error's: 1 is also what a failed audit verification returns, 9 a rollout that did not complete.

    status  kind                    exit  raised for
    400     bad_request              1    a body that cannot be parsed (bytes that are not text, broken multipart)
    401     unauthorized            10    no bearer token, or one that is not configured
    403     forbidden               10    a token whose role may not do this (viewer < operator < admin)
    404     not_found                3    an unknown agent, cluster, package, rollout, projection or token
    405     method_not_allowed       1    a method the route does not take
    409     conflict                 4    a reused package, a busy cluster, an agent in two rollouts, a stale write
    409     illegal_transition       5    a command the state machine does not allow now (pause a finished rollout)
    413     too_large                2    a body over the configured limit
    415     unsupported_media_type   1    a body of a type the route does not take
    422     invalid_input            2    a malformed version, option, time, anchor, package (hostile archive too),
                                          actor or database URL, or a request the models refuse (naming each field)
    500     internal_error           1    anything else (a bug: the server log has the traceback)
    500     store_error              8    a stored event that cannot be read (a broken store, never bad input)
    502     agent_failed             1    an agent did not answer or refused (adding one by address, a manual start)
    503     unavailable              6    the database (or the ``--server``) cannot be reached, a projection is
                                          stopped, the token file is broken, or the server is busy
    503     schema_not_migrated      7    the database has no schema (run `dma-upgrade db upgrade`)

The first kind of a status is what an answer of that status without a kind stands for.
"""

from __future__ import annotations

from dataclasses import dataclass

from dma_upgrade.engine.errors import (
    AgentOutcomeUnknown,
    AgentStepFailed,
    AgentUnreachable,
    ConcurrencyConflict,
    Conflict,
    DmaUpgradeError,
    DuplicateEventId,
    EventDecodeError,
    EventStoreError,
    InvalidInput,
    InvalidTransition,
    LeaseLost,
    NotFound,
    SchemaNotMigrated,
    StoreUnavailable,
    UnknownEventType,
)
from dma_upgrade.engine.packages import PackageRejected
from dma_upgrade.engine.upgrade_paths import UpgradePathRefused
from dma_upgrade.engine.versions import InvalidVersion


class TokenFileUnreadable(StoreUnavailable):
    """The token file exists but cannot be used: no call can be authenticated until it is mended."""


class PayloadTooLarge(InvalidInput):
    """A request body over the configured limit."""


class ProjectionStopped(DmaUpgradeError):
    """A projection's handler failed on an event; the projection stays at the event before it."""


class ServerBusy(DmaUpgradeError):
    """Every slot of a capped kind of request (calls that wait on agents, uploads) is taken: try again shortly."""


class ServerUnreachable(DmaUpgradeError):
    """The API server named by ``--server`` could not be reached."""


class ServerRefusal(DmaUpgradeError):
    """An error the API server answered with; ``outcome`` is the kind it named (or its status stands for)."""

    def __init__(self, message: str, outcome: Outcome) -> None:
        super().__init__(message)
        self.outcome = outcome


@dataclass(frozen=True)
class Outcome:
    """How one kind of error reaches a person: the API's ``error`` and status, the CLI's exit code."""

    kind: str
    status: int
    exit_code: int


BAD_REQUEST = Outcome("bad_request", 400, 1)
UNAUTHORIZED = Outcome("unauthorized", 401, 10)
FORBIDDEN = Outcome("forbidden", 403, 10)
NOT_FOUND = Outcome("not_found", 404, 3)
METHOD_NOT_ALLOWED = Outcome("method_not_allowed", 405, 1)
CONFLICT = Outcome("conflict", 409, 4)
ILLEGAL_TRANSITION = Outcome("illegal_transition", 409, 5)
TOO_LARGE = Outcome("too_large", 413, 2)
UNSUPPORTED_MEDIA_TYPE = Outcome("unsupported_media_type", 415, 1)
INVALID_INPUT = Outcome("invalid_input", 422, 2)
INTERNAL_ERROR = Outcome("internal_error", 500, 1)
STORE_ERROR = Outcome("store_error", 500, 8)
AGENT_FAILED = Outcome("agent_failed", 502, 1)
UNAVAILABLE = Outcome("unavailable", 503, 6)
SCHEMA_NOT_MIGRATED = Outcome("schema_not_migrated", 503, 7)

KINDS: tuple[Outcome, ...] = (
    BAD_REQUEST, UNAUTHORIZED, FORBIDDEN, NOT_FOUND, METHOD_NOT_ALLOWED, CONFLICT, ILLEGAL_TRANSITION, TOO_LARGE,
    UNSUPPORTED_MEDIA_TYPE, INVALID_INPUT, INTERNAL_ERROR, STORE_ERROR, AGENT_FAILED, UNAVAILABLE,
    SCHEMA_NOT_MIGRATED,
)
"""Every kind, by status (the first of a status is that status's default)."""


OUTCOMES: dict[type[DmaUpgradeError], Outcome] = {
    DmaUpgradeError: INTERNAL_ERROR,
    ConcurrencyConflict: CONFLICT,
    LeaseLost: INTERNAL_ERROR,
    InvalidTransition: ILLEGAL_TRANSITION,
    EventStoreError: STORE_ERROR,
    UnknownEventType: STORE_ERROR,
    EventDecodeError: STORE_ERROR,
    DuplicateEventId: STORE_ERROR,
    StoreUnavailable: UNAVAILABLE,
    TokenFileUnreadable: UNAVAILABLE,
    SchemaNotMigrated: SCHEMA_NOT_MIGRATED,
    NotFound: NOT_FOUND,
    Conflict: CONFLICT,
    InvalidInput: INVALID_INPUT,
    InvalidVersion: INVALID_INPUT,
    PackageRejected: INVALID_INPUT,
    UpgradePathRefused: INVALID_INPUT,
    PayloadTooLarge: TOO_LARGE,
    AgentStepFailed: AGENT_FAILED,
    AgentOutcomeUnknown: AGENT_FAILED,
    AgentUnreachable: AGENT_FAILED,
    ProjectionStopped: UNAVAILABLE,
    ServerBusy: UNAVAILABLE,
    ServerUnreachable: UNAVAILABLE,
}
"""The kind of each class of the tree (a ``ServerRefusal`` carries its own)."""


def outcome_of(error: DmaUpgradeError) -> Outcome:
    """How ``error`` is answered: the row of its class (of the nearest class of the table it derives from)."""
    if isinstance(error, ServerRefusal):
        return error.outcome
    return next(OUTCOMES[cls] for cls in type(error).__mro__ if cls in OUTCOMES)


_BY_KIND = {outcome.kind: outcome for outcome in KINDS}


def answered(kind: object, status: int) -> Outcome:
    """What an error answer of the API stands for: the ``kind`` it names, else the first kind of its ``status``,
    else an error of no known kind."""
    by_kind = _BY_KIND.get(kind) if isinstance(kind, str) else None
    return by_kind or for_status(status) or INTERNAL_ERROR


def for_status(status: int) -> Outcome | None:
    """The first kind of ``status``, if the table has one."""
    return next((outcome for outcome in KINDS if outcome.status == status), None)
