"""``/healthz`` (the process answers) and ``/readyz`` (it can serve: database up, projections caught up)."""

from __future__ import annotations

import sqlalchemy as sa
from fastapi import APIRouter
from fastapi.responses import JSONResponse

from adapters.api.context import Context
from adapters.api.models import ProjectionStatusOut, ReadinessOut
from adapters.sql.database import first_line

router = APIRouter(tags=["health"])


@router.get("/healthz")
def health() -> dict[str, str]:
    """Liveness: the process is up and answering."""
    return {"status": "ok"}


@router.get("/readyz", response_model=ReadinessOut, responses={503: {"model": ReadinessOut}})
def readiness(context: Context) -> JSONResponse:
    """Ready when the database answers and no projection is stopped or further behind than allowed."""
    container = context.container
    reasons: list[str] = []
    statuses: list[ProjectionStatusOut] = []
    try:
        with container.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        database = True
        statuses = [ProjectionStatusOut.of(s) for s in container.projections.status()]
    except sa.exc.SQLAlchemyError as error:
        database = False
        reasons.append(f"database unreachable: {first_line(error)}")
    allowed_lag = container.settings.ready_max_lag_events
    for status in statuses:
        if status.error:
            reasons.append(f"projection {status.name} stopped at {status.error_position}: {status.error}")
        elif status.lag_events > allowed_lag:
            reasons.append(f"projection {status.name} is catching up ({status.lag_events} events behind)")
    body = ReadinessOut(ready=not reasons, database=database, reasons=reasons, projections=statuses)
    return JSONResponse(body.model_dump(mode="json"), status_code=200 if body.ready else 503)
