"""``/healthz`` (the process answers) and ``/readyz`` (it can serve: database up, projections caught up).

Both are open, so neither waits behind other requests nor says more than a stranger needs: ``/healthz`` does no
work and needs no worker thread, ``/readyz`` (and ``/metrics``) read the database on threads of their own
(``ApiContext.probes``), and an unreachable database is named as such, its address and the driver's words kept
to the server's log.
"""

from __future__ import annotations

import logging
from functools import partial

import anyio.to_thread
import sqlalchemy as sa
from fastapi import APIRouter
from fastapi.responses import JSONResponse

from dma_upgrade.adapters.api.context import ApiContext, Context
from dma_upgrade.adapters.api.models import ReadinessOut
from dma_upgrade.adapters.shapes.models import ProjectionStatusOut
from dma_upgrade.adapters.sql.database import first_line

router = APIRouter(tags=["health"])
_log = logging.getLogger("dma_upgrade.api")


@router.get("/healthz")
async def health() -> dict[str, str]:
    """Liveness: the process is up and answering."""
    return {"status": "ok"}


@router.get("/readyz", response_model=ReadinessOut, responses={503: {"model": ReadinessOut}})
async def readiness(context: Context) -> JSONResponse:
    """Ready when the database answers and no projection is stopped or further behind than allowed."""
    return await anyio.to_thread.run_sync(partial(_readiness, context), limiter=context.probes)


def _readiness(context: ApiContext) -> JSONResponse:
    app = context.app
    reasons: list[str] = []
    statuses: list[ProjectionStatusOut] = []
    try:
        with app.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        database = True
        statuses = [ProjectionStatusOut.of(s) for s in app.projections.status()]
    except sa.exc.SQLAlchemyError as error:
        database = False
        _log.warning("not ready: database unreachable: %s", first_line(error))
        reasons.append("database unreachable: the server's log says why")
    allowed_lag = app.settings.ready_max_lag_events
    for status in statuses:
        if status.error:
            reasons.append(f"projection {status.name} stopped at {status.error_position}: {status.error}")
        elif status.lag_events > allowed_lag:
            reasons.append(f"projection {status.name} is catching up ({status.lag_events} events behind)")
    body = ReadinessOut(ready=not reasons, database=database, reasons=reasons, projections=statuses)
    return JSONResponse(body.model_dump(mode="json"), status_code=200 if body.ready else 503)
