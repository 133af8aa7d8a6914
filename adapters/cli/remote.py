"""The command line as a client of ``dma-upgrade serve``: the same answers, fetched from its API with httpx.

Errors come back as the API's ``{"error": kind, "detail": message}`` and are raised as a ``ServerRefusal`` of
that kind, so they print the same line and exit with the same code as locally (the one table,
``adapters/errors.py``). The server drives rollouts: ``run`` only follows the progress endpoint.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO, TypeVar
from urllib.parse import quote
from uuid import UUID

import httpx
import pydantic
from rich.console import Console, RenderableType

from dma_upgrade.adapters.audit.check import parse_anchor
from dma_upgrade.adapters.audit.export import ExportFormat, ExportSummary, Selection
from dma_upgrade.adapters.cli.context import Server
from dma_upgrade.adapters.cli.live import show_live
from dma_upgrade.adapters.errors import NOT_FOUND, ServerRefusal, ServerUnreachable, answered
from dma_upgrade.adapters.progress_report import Reporter
from dma_upgrade.adapters.read.freshness import Lag, Reading
from dma_upgrade.adapters.read.history_queries import PACKAGE_HISTORY
from dma_upgrade.adapters.read.progress_queries import PROGRESS
from dma_upgrade.adapters.read.progress_view import progress_table
from dma_upgrade.adapters.shapes import models
from dma_upgrade.adapters.shapes.paths import PathOut
from dma_upgrade.engine.commands import RolloutCommand
from dma_upgrade.engine.errors import DmaUpgradeError, describe_validation
from dma_upgrade.engine.packages import PackageRejected
from dma_upgrade.engine.path_advice import PathQuery
from dma_upgrade.engine.rollout import ENDED_STATES

T = TypeVar("T")


_TRAILER_CHARS = 512
"""More than the longest anchor line an export ends with."""

REFRESH_SECONDS = 0.5
"""How often ``--wait`` and ``run`` poll the server's progress."""

TIMEOUT_SECONDS = 60.0
"""How long a request (an upload excepted) may wait for the server's answer."""


def refusal(response: httpx.Response, server: Server) -> ServerRefusal:
    """An error answer of the API as the kind it names (or its status stands for: a request the framework refused
    before the product saw it), with the server's one-line message."""
    try:
        body = response.json()
    except ValueError:
        body = None
    fields = body if isinstance(body, dict) else {}
    message = _detail(fields.get("detail")) or f"{server.url} answered {response.status_code} {response.reason_phrase}"
    if response.status_code == 401:
        message += " (give a token with --token or DMA_UPGRADE_TOKEN)"
    return ServerRefusal(message, answered(fields.get("error"), response.status_code))


def _detail(detail: Any) -> str:
    """The API's ``detail``: a message, or the framework's list of invalid fields."""
    if isinstance(detail, list):
        return describe_validation([item for item in detail if isinstance(item, dict)])
    return str(detail) if detail else ""


class HttpBackend:
    """The product behind ``dma-upgrade serve``'s API, reached with a bearer token."""

    def __init__(self, server: Server) -> None:
        self._server = server
        headers = {"Authorization": f"Bearer {server.token}"} if server.token else {}
        self._client = httpx.Client(base_url=f"{server.url.rstrip('/')}/api/v1", headers=headers,
                                    timeout=httpx.Timeout(TIMEOUT_SECONDS, connect=10.0))

    def __enter__(self) -> HttpBackend:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self._client.close()

    @property
    def location(self) -> str:
        return self._server.url

    @contextlib.contextmanager
    def _reaching(self) -> Iterator[None]:
        """Turn a connection that fails into ``ServerUnreachable``."""
        try:
            yield
        except httpx.TransportError as error:
            reason = str(error) or type(error).__name__
            raise ServerUnreachable(f"server unreachable: {self._server.url} ({reason})") from None

    def _call(self, shape: type[T], method: str, path: str, **request: Any) -> T:
        """Send one request and read its answer as ``shape``; errors raise as the product errors they stand for."""
        return self._answer(shape, method, path, **request)[0]

    def _read(self, shape: type[T], projection: str, path: str, **request: Any) -> Reading[T]:
        """GET what a read model answers, as ``shape``, with the lag its headers give."""
        value, response = self._answer(shape, "GET", path, **request)
        return Reading(value, Lag.of_headers(projection, response.headers))

    def _answer(self, shape: type[T], method: str, path: str, **request: Any) -> tuple[T, httpx.Response]:
        with self._reaching():
            response = self._client.request(method, path, **request)
        if response.is_error:
            raise refusal(response, self._server)
        try:
            return pydantic.TypeAdapter(shape).validate_json(response.content), response
        except pydantic.ValidationError as error:
            raise DmaUpgradeError(f"{self._server.url} did not answer as a dma-upgrade API server "
                                  f"({error.error_count()} problems in the answer to {method} {path})") from None

    def agents(self) -> list[models.AgentOut]:
        return self._call(list[models.AgentOut], "GET", "/agents")

    def add_agent(self, agent: models.AgentIn) -> models.AgentOut:
        return self._call(models.AgentOut, "POST", "/agents", json=agent.model_dump(mode="json"))

    def start_agent(self, name: str) -> models.AgentOut:
        return self._call(models.AgentOut, "POST", f"/agents/{_segment(name)}/start")

    def set_agent_ports(self, name: str, ports: models.AgentPortsIn) -> models.AgentOut:
        return self._call(models.AgentOut, "PUT", f"/agents/{_segment(name)}/ports",
                          json=ports.model_dump(mode="json", exclude_none=True))

    def upgrade_path(self, query: PathQuery) -> list[PathOut]:
        params = {"to": query.target, "from": query.source, "agent": query.agent, "cluster": query.cluster}
        return self._call(list[PathOut], "GET", "/upgrade-path",
                          params={key: value for key, value in params.items() if value is not None})

    def packages(self) -> list[models.PackageOut]:
        return self._call(list[models.PackageOut], "GET", "/packages")

    def upload(self, file: Path) -> models.PackageOut:
        try:
            stream = file.open("rb")
        except OSError as error:
            raise PackageRejected(file.name, f"file cannot be read: {error.strerror or error}") from None
        with stream:
            return self._call(models.PackageOut, "POST", "/packages", files={"file": (file.name, stream)},
                              timeout=httpx.Timeout(None, connect=10.0))

    def plan(self, request: models.RolloutIn) -> models.PlanOut:
        return self._call(models.PlanOut, "POST", "/rollouts/plan", json=request.model_dump(mode="json"))

    def start_rollout(self, request: models.RolloutIn) -> models.PlanOut:
        return self._call(models.PlanOut, "POST", "/rollouts", json=request.model_dump(mode="json"))

    def control(self, command: RolloutCommand) -> models.RolloutStateOut:
        return self._call(models.RolloutStateOut, "POST", f"/rollouts/{command.rollout_id}/{command.name}")

    def resolve(self, rollout_id: UUID, agent: str, applied: bool) -> models.DoubtResolvedOut:
        body = models.ResolveIn(agent=agent, applied=applied).model_dump(mode="json")
        return self._call(models.DoubtResolvedOut, "POST", f"/rollouts/{rollout_id}/resolve", json=body)

    def run(self, rollout_id: UUID, console: Console) -> models.RolloutStateOut:
        show_live(console, self._frames(rollout_id))
        return self._call(models.RolloutStateOut, "GET", f"/rollouts/{rollout_id}")

    def _frames(self, rollout_id: UUID) -> Iterator[RenderableType]:
        """The rollout's progress table, polled until the rollout ends (while the server's progress read model has
        not reached a rollout just started, the poll waits for it)."""
        while True:
            view = self._newest(rollout_id)
            if view is not None:
                yield progress_table(view)
                if view.state in ENDED_STATES:
                    return
            time.sleep(REFRESH_SECONDS)

    def _newest(self, rollout_id: UUID) -> models.RolloutProgressOut | None:
        """The rollout's progress now; None while the server's read model is behind and does not hold it yet."""
        try:
            return self._read(models.RolloutProgressOut, PROGRESS, f"/progress/{rollout_id}").value
        except ServerRefusal as refused:
            if refused.outcome is not NOT_FOUND:
                raise
        # the store holds it (else NotFound raises)
        self._call(models.RolloutStateOut, "GET", f"/rollouts/{rollout_id}")
        return None

    def settings(self) -> dict[str, str]:
        return self._call(dict[str, str], "GET", "/settings")

    def set_setting(self, key: str, value: str) -> dict[str, str]:
        return self._call(dict[str, str], "PUT", f"/settings/{_segment(key)}", json={"value": value})

    def progress(self, rollout_id: UUID | None = None) -> Reading[list[models.RolloutProgressOut]]:
        if rollout_id is None:
            return self._read(list[models.RolloutProgressOut], PROGRESS, "/progress")
        one = self._read(models.RolloutProgressOut, PROGRESS, f"/progress/{rollout_id}")
        return Reading([one.value], one.lag)

    def progress_at(self, rollout_id: UUID, *, at_time: datetime | None,
                    at_position: int | None) -> models.RolloutProgressOut:
        params = {"as_of": at_time.isoformat() if at_time is not None else None, "at_position": at_position}
        return self._call(models.RolloutProgressOut, "GET", f"/progress/{rollout_id}",
                          params={k: v for k, v in params.items() if v is not None})

    def package_history(self) -> Reading[list[models.PackageHistoryOut]]:
        return self._read(list[models.PackageHistoryOut], PACKAGE_HISTORY, "/packages/history")

    def version_history(self, agent: str) -> Reading[list[models.VersionHistoryOut]]:
        return self._read(list[models.VersionHistoryOut], PACKAGE_HISTORY, f"/agents/{_segment(agent)}/history")

    def verify_audit(self, anchor: str | None, reporter: Reporter | None = None) -> models.AuditVerifyOut:
        """The server's verdict, in one request: nothing to report as it goes."""
        return self._call(models.AuditVerifyOut, "GET", "/audit/verify", params={"anchor": anchor} if anchor else {})

    def export_audit(self, export_format: ExportFormat, selection: Selection, stream: TextIO,
                     reporter: Reporter | None = None) -> ExportSummary:
        """The server's export, streamed to ``stream``; its size is not known ahead, so nothing is reported."""
        params = {"format": export_format.value,
                  "from": selection.start.isoformat() if selection.start is not None else None,
                  "to": selection.end.isoformat() if selection.end is not None else None,
                  "rollout": str(selection.rollout) if selection.rollout is not None else None}
        tail = ""
        with self._reaching(), self._client.stream(
                "GET", "/audit/export", params={k: v for k, v in params.items() if v is not None}) as response:
            if response.is_error:
                response.read()
                raise refusal(response, self._server)
            for text in response.iter_text():
                stream.write(text)
                tail = (tail + text)[-_TRAILER_CHARS:]
        return self._trailer(tail, export_format)

    def _trailer(self, tail: str, export_format: ExportFormat) -> ExportSummary:
        """What the export's last line (its anchor line) says was exported."""
        last = tail.rstrip("\n").rpartition("\n")[2]
        anchor: str | None = None
        exported: int | None = None
        if export_format is ExportFormat.CSV:
            match = re.fullmatch(r"# anchor (\S+) exported (\d+)", last)
            if match is not None:
                anchor, exported = match[1], int(match[2])
        else:
            with contextlib.suppress(ValueError, TypeError, KeyError):
                trailer = json.loads(last)
                anchor, exported = trailer["anchor"], int(trailer["exported"])
        if exported is None:
            raise DmaUpgradeError(f"the export from {self._server.url} ended without its anchor line")
        summary = ExportSummary(exported=exported)
        if anchor not in (None, "none"):
            summary.last_hash, summary.last_position = parse_anchor(str(anchor))
        return summary

    def projections(self) -> list[models.ProjectionStatusOut]:
        return self._call(list[models.ProjectionStatusOut], "GET", "/projections")

    def engines(self) -> models.EnginesOut:
        return self._call(models.EnginesOut, "GET", "/engines")


def _segment(text: str) -> str:
    """``text`` as one URL path segment."""
    return quote(text, safe="")
