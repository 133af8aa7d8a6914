"""Running the API on a real socket in a background thread (``serve`` and the tests use the same).

uvicorn closes a connection left idle after a response (``timeout_keep_alive``), but nothing bounds how long a
client may take to send a request: a connection that sends nothing, trickles a request head a byte at a time, or
stops in the middle of a body holds its socket (and, mid-body, the route waiting for it) for ever. ``ApiServer``
therefore speaks HTTP/1.1 through ``TimedH11Protocol``, uvicorn's h11 protocol with the two timeouts it lacks
(``RequestTimeouts``). Request heads are also bounded in size, by h11 (16 KiB: a bigger head is a 400).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import h11
import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

_log = logging.getLogger("dma_upgrade.api")


@dataclass(frozen=True)
class RequestTimeouts:
    """How long a client may take over its request before the server hangs up."""

    head_seconds: float = 10.0
    """From the connection (or the end of the previous response) to the end of the request head."""
    body_idle_seconds: float = 30.0
    """The longest pause between two pieces of a request body (a slow upload is fine; a stalled one is not)."""
    keep_alive_seconds: int = 5
    """How long a connection may stay idle between requests (uvicorn's own timeout)."""


class _TimedConfig(uvicorn.Config):
    """uvicorn's configuration with the request timeouts ``TimedH11Protocol`` reads."""

    def __init__(self, app: FastAPI, timeouts: RequestTimeouts, **options: Any) -> None:
        super().__init__(app, http=TimedH11Protocol, timeout_keep_alive=timeouts.keep_alive_seconds, **options)
        self.request_timeouts = timeouts


class TimedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, hanging up on a client whose request head is not whole within ``head_seconds`` or
    whose body pauses longer than ``body_idle_seconds`` (unless the server itself paused reading)."""

    def __init__(self, config: uvicorn.Config, server_state: ServerState, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None) -> None:
        super().__init__(config, server_state, app_state, _loop)
        assert isinstance(config, _TimedConfig)
        self.timeouts = config.request_timeouts
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._watch()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._watch()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._watch()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel()
        super().connection_lost(exc)

    def _watch(self) -> None:
        """Time what the client owes now: the rest of a request head (one deadline for the whole head), the next
        piece of a body (a new deadline after each), or nothing while the server answers."""
        state = self.conn.their_state
        if state is h11.IDLE and self._timer is None:
            self._timer = self.loop.call_later(self.timeouts.head_seconds, self._expire, "a whole request head")
        elif state is h11.SEND_BODY:
            self._cancel()
            self._timer = self.loop.call_later(self.timeouts.body_idle_seconds, self._expire, "the rest of a body")
        elif state is not h11.IDLE:
            self._cancel()

    def _cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expire(self, owed: str) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        if self.flow.read_paused:  # the server stopped reading (a full buffer), not the client sending
            self._watch()
            return
        _log.info("hung up on %s: %s did not come in time", self.client or "a client", owed)
        self.transport.close()


class ApiServer:
    """uvicorn serving ``app`` on ``host:port`` in a daemon thread; ``port=0`` picks a free port."""

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0,
                 timeouts: RequestTimeouts = RequestTimeouts()) -> None:
        config = _TimedConfig(app, timeouts, host=host, port=port, log_level="warning", access_log=False,
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
