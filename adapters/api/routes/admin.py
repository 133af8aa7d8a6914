"""``/api/v1/settings``, ``/api/v1/audit``, ``/api/v1/projections`` and ``/api/v1/engines``: system defaults, the
audit trail, the read models' lag and the engine processes at work."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from dma_upgrade.adapters.api.context import Admin, Context, Viewer
from dma_upgrade.adapters.api.errors import ERROR_RESPONSES
from dma_upgrade.adapters.api.models import SettingIn
from dma_upgrade.adapters.audit.check import check_audit
from dma_upgrade.adapters.audit.export import ExportFormat, ExportSummary, Selection, export_lines, select_records
from dma_upgrade.adapters.shapes.models import AuditVerifyOut, EnginesOut, ProjectionStatusOut, as_utc
from dma_upgrade.adapters.sql.leases import lease_overview

router = APIRouter(prefix="/api/v1", responses=ERROR_RESPONSES)


@router.get("/settings", tags=["settings"])
def list_settings(context: Context, _: Viewer) -> dict[str, str]:
    """Every system setting (upgrade option defaults, default failover policy) with its value."""
    return context.service.settings()


@router.put("/settings/{key}", tags=["settings"])
def set_setting(key: str, body: SettingIn, context: Context, caller: Admin) -> dict[str, str]:
    """Change one setting (an event); returns every setting."""
    context.service.set_setting(key, body.value, actor=caller.name)
    return context.service.settings()


@router.get("/audit/verify", tags=["audit"])
def verify(context: Context, _: Viewer,
           anchor: Annotated[str | None, Query(max_length=200, description="HASH@POSITION to check")] = None,
           ) -> AuditVerifyOut:
    """Walk the SHA-256 hash chain over every event (and check an anchor from an earlier export)."""
    return AuditVerifyOut.of(check_audit(context.app.store, anchor))


_MEDIA = {ExportFormat.JSONL: "application/x-ndjson", ExportFormat.CSV: "text/csv"}


@router.get("/audit/export", tags=["audit"], response_class=StreamingResponse,
            responses={200: {"content": {"application/x-ndjson": {}, "text/csv": {}},
                             "description": "every selected event, then the anchor line"}})
def export(context: Context, _: Viewer,
           export_format: Annotated[Literal["jsonl", "csv"], Query(alias="format")] = "jsonl",
           start: Annotated[datetime | None, Query(alias="from", description="recorded at or after")] = None,
           end: Annotated[datetime | None, Query(alias="to", description="recorded before")] = None,
           rollout: Annotated[UUID | None, Query(description="one rollout's events")] = None,
           ) -> StreamingResponse:
    """Download the audit trail, streamed page by page, ending with the anchor of the last event."""
    selection = Selection(start=as_utc(start), end=as_utc(end), rollout=rollout)
    fmt = ExportFormat.parse(export_format)
    records = select_records(context.app.store, selection)

    def lines() -> Iterator[bytes]:
        for line in export_lines(records, fmt, ExportSummary()):
            yield line.encode("utf-8")

    extension = "jsonl" if fmt is ExportFormat.JSONL else "csv"
    return StreamingResponse(lines(), media_type=_MEDIA[fmt],
                             headers={"Content-Disposition": f'attachment; filename="audit.{extension}"'})


@router.get("/projections", tags=["projections"])
def projections(context: Context, _: Viewer) -> list[ProjectionStatusOut]:
    """Each projection's checkpoint and how far behind the head it is."""
    return [ProjectionStatusOut.of(status) for status in context.app.projections.status()]


@router.get("/engines", tags=["engines"])
def engines(context: Context, _: Viewer) -> EnginesOut:
    """The engine processes sharing the database: the rollouts each runs, the upgrades it drives, its roles."""
    return EnginesOut.of(lease_overview(context.app.engine, context.app.clock.now()))
