"""Serving the API of one process: the one entry point ``dma-upgrade serve`` starts the API through.

The command line and the API do not import each other (an import-linter contract); ``serve`` runs the engine
and the API in one process, so its command calls ``start_api`` here, the API's only door for the CLI.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from dma_upgrade.adapters.access.tokens import TokenFile
from dma_upgrade.adapters.api.app import create_app
from dma_upgrade.adapters.api.context import ApiContext
from dma_upgrade.adapters.api.server import ApiServer
from dma_upgrade.adapters.bootstrap import App

__all__ = ["ApiServer", "start_api"]


def start_api(app: App, tokens: TokenFile, registry: CollectorRegistry, *, host: str, port: int) -> ApiServer:
    """The API on ``app``'s services, listening on ``host``:``port`` with ``registry`` at ``/metrics``; ``OSError``
    or ``TimeoutError`` (nothing left running) when it cannot listen there."""
    server = ApiServer(create_app(ApiContext(app, tokens), registry), host=host, port=port)
    try:
        server.start()
    except (OSError, TimeoutError):
        server.stop()
        raise
    return server
