"""The status code and kind of each product error, the one table the API answers by and the CLI client reads
back (kept free of the web stack, so the CLI can import it without loading FastAPI)."""

from __future__ import annotations

from dma_upgrade.adapters.sql.projection_runner import ProjectionStopped
from dma_upgrade.engine.errors import (
    AgentStepFailed,
    ConcurrencyConflict,
    Conflict,
    DmaUpgradeError,
    EventStoreError,
    InvalidInput,
    InvalidTransition,
    NotFound,
    SchemaNotMigrated,
    StoreUnavailable,
)


class PayloadTooLarge(InvalidInput):
    """A request body over the configured limit."""


class ServerBusy(DmaUpgradeError):
    """Every slot of a capped kind of request (calls that wait on agents, uploads) is taken: try again shortly."""


STATUS_CODES: list[tuple[type[DmaUpgradeError], int, str]] = [
    (NotFound, 404, "not_found"),
    (Conflict, 409, "conflict"),
    (ConcurrencyConflict, 409, "conflict"),
    (InvalidTransition, 409, "illegal_transition"),
    (PayloadTooLarge, 413, "too_large"),
    (InvalidInput, 422, "invalid_input"),
    (SchemaNotMigrated, 503, "schema_not_migrated"),
    (StoreUnavailable, 503, "unavailable"),
    (ServerBusy, 503, "unavailable"),
    (ProjectionStopped, 503, "unavailable"),
    (EventStoreError, 500, "store_error"),
    (AgentStepFailed, 502, "agent_failed"),
    (DmaUpgradeError, 500, "internal_error"),
]
"""First match wins."""


def status_for(error: DmaUpgradeError) -> tuple[int, str]:
    """The status code and kind the API answers ``error`` with."""
    return next((status, kind) for cls, status, kind in STATUS_CODES if isinstance(error, cls))


def error_for_kind() -> dict[str, type[DmaUpgradeError]]:
    """Each kind as the product error it stands for (the first class the table gives it)."""
    kinds: dict[str, type[DmaUpgradeError]] = {}
    for cls, _, kind in STATUS_CODES:
        kinds.setdefault(kind, cls)
    return kinds
