"""Running the API on a real socket in a background thread (``serve`` and the tests use the same)."""

from __future__ import annotations

import threading
import time

import uvicorn
from fastapi import FastAPI


class ApiServer:
    """uvicorn serving ``app`` on ``host:port`` in a daemon thread; ``port=0`` picks a free port."""

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0) -> None:
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                                lifespan="off", timeout_graceful_shutdown=5)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="api", daemon=True)

    def start(self, timeout: float = 30.0) -> None:
        """Start serving; return once the socket listens (raise if it could not)."""
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive():
                raise OSError(f"the API could not listen on {self._server.config.host}:{self._server.config.port}")
            if time.monotonic() > deadline:
                raise TimeoutError("the API did not start in time")
            time.sleep(0.02)

    @property
    def port(self) -> int:
        """The port actually bound."""
        servers = self._server.servers
        return int(servers[0].sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        """``http://HOST:PORT`` with the port actually bound."""
        return f"http://{self._server.config.host}:{self.port}"

    def stop(self) -> None:
        """Stop serving: let requests in flight finish (a few seconds at most), then end the thread."""
        self._server.should_exit = True
        self._thread.join(timeout=10)
