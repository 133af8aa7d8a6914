"""The HTTP API of ``dma-upgrade serve``: FastAPI, OpenAPI at ``/openapi.json``, bearer tokens with roles."""

from __future__ import annotations

from functools import partial

import anyio.to_thread
from fastapi import FastAPI
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from dma_upgrade.adapters.api import page
from dma_upgrade.adapters.api.context import ApiContext, needed_role
from dma_upgrade.adapters.api.errors import install_error_handlers
from dma_upgrade.adapters.api.guard import BodyGuard
from dma_upgrade.adapters.api.routes import admin, agents, clusters, health, packages, paths, progress, rollouts, whoami


def create_app(context: ApiContext, registry: CollectorRegistry | None = None) -> FastAPI:
    """The API on one process's services; ``registry`` is served at ``/metrics`` (open, no token)."""
    app = FastAPI(title="dma-upgrade", version="1",
                  description="Upgrade DataMiner Agents with a full audit trail, crash recovery and metrics. "
                              "Every route but /metrics, /healthz, /readyz and the page needs a bearer token.")
    app.state.api = context
    install_error_handlers(app)
    app.add_middleware(BodyGuard, tokens=context.tokens, role_for=partial(needed_role, app),
                       max_upload_bytes=context.app.settings.max_upload_bytes, uploads=context.uploads)
    for module in (agents, clusters, packages, rollouts, paths, progress, admin, whoami, health):
        app.include_router(module.router)
    app.include_router(page.router)
    if registry is not None:
        @app.get("/metrics", tags=["health"], response_class=Response,
                 responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
        async def metrics() -> Response:
            """Prometheus metrics of this process and of the fleet (open, no token)."""
            exposition = await anyio.to_thread.run_sync(generate_latest, registry, limiter=context.probes)
            return Response(exposition, media_type=CONTENT_TYPE_LATEST)
    return app
