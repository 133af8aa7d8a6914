"""Hostile callers of the HTTP API, over real HTTP (raw sockets where a polite client cannot misbehave enough):
calls that wait on agents are capped and never hold up /healthz, /metrics or the other routes; a body is refused
by role before any of it is read; uploads are capped; a broken token file is a 503; /readyz keeps the database's
address to itself; and a client that sends its request too slowly is disconnected."""

from __future__ import annotations

import http.client
import json
import socket
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from dma_upgrade.adapters.access.tokens import Role
from dma_upgrade.adapters.api.server import ApiServer, RequestTimeouts
from tests.conftest import FakeClock
from tests.integration.api.harness import CLUSTER, ApiHarness

CALLERS = 45
"""More calls at once than anyio's 40 worker threads, which every sync route shares."""


def refused(response: httpx.Response, status: int, error: str) -> str:
    """Assert ``response`` is ``status`` with the one-line JSON error ``error``; return its detail."""
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert body["error"] == error and body["detail"] and "\n" not in body["detail"], body
    return str(body["detail"])


@pytest.fixture
def serve(sqlite_url: str, clock: FakeClock, tmp_path: Path) -> Iterator[Callable[..., ApiHarness]]:
    """Serve the API on a SQLite file with ``Settings`` overrides (what is tested here is the same on PostgreSQL)."""
    built: list[ApiHarness] = []

    def make(**settings: Any) -> ApiHarness:
        built.append(ApiHarness(sqlite_url, clock, tmp_path, **settings))
        return built[-1]

    yield make
    for api in built:
        api.close()


# -- calls that wait on agents ----------------------------------------------------------------------------


class SilentAgent:
    """A hostile agent on 127.0.0.1: it accepts every connection and never answers, until closed."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=128)
        self._listener.settimeout(0.1)
        self.address = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._accepted: list[socket.socket] = []
        self._changed = threading.Condition()
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="silent-agent", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue
            with self._changed:
                self._accepted.append(connection)
                self._changed.notify_all()

    @property
    def callers(self) -> int:
        """How many connections it has accepted."""
        with self._changed:
            return len(self._accepted)

    def wait_for_callers(self, count: int) -> None:
        with self._changed:
            assert self._changed.wait_for(lambda: len(self._accepted) >= count, timeout=60), self._accepted

    def close(self) -> None:
        """Stop accepting and hang up on every caller."""
        self._closing.set()
        self._thread.join()
        self._listener.close()
        with self._changed:
            for connection in self._accepted:
                connection.close()


@dataclass
class Stalled:
    """``CALLERS`` by-address calls sent at once to a silent agent: the first ``cap`` wait on it."""

    api: ApiHarness
    agent: SilentAgent
    calls: list[Future[httpx.Response]]
    cap: int

    def refusals(self) -> list[Future[httpx.Response]]:
        """The calls answered while the others wait: as many as went past the cap."""
        return list(islice(as_completed(self.calls, timeout=60), CALLERS - self.cap))


@pytest.fixture
def stalled(serve: Callable[..., ApiHarness]) -> Iterator[Stalled]:
    api = serve(agent_timeout_seconds=120, agent_retry_seconds=0, agent_gateway="http")
    api.add_agents()
    agent = SilentAgent()
    client = httpx.Client(base_url=api.server.url, timeout=120, limits=httpx.Limits(max_connections=CALLERS),
                          headers={"Authorization": f"Bearer {api.tokens[Role.OPERATOR]}"})
    pool = ThreadPoolExecutor(CALLERS)
    calls = [pool.submit(client.post, "/api/v1/agents/by-address", json={"address": agent.address})
             for _ in range(CALLERS)]
    try:
        yield Stalled(api, agent, calls, api.settings.api_agent_calls)
    finally:
        agent.close()
        pool.shutdown()
        client.close()


def test_calls_past_the_agent_cap_are_refused_at_once_while_health_metrics_and_reads_answer(
        stalled: Stalled) -> None:
    refusals = stalled.refusals()
    waiting = [call for call in stalled.calls if call not in refusals]
    stalled.agent.wait_for_callers(stalled.cap)

    for call in refusals:
        assert "agents" in refused(call.result(), 503, "unavailable")
    anonymous = stalled.api.client(None)
    probes = {path: anonymous.get(path).status_code for path in ("/healthz", "/metrics", "/readyz")}
    agents = stalled.api.client(Role.VIEWER).get("/api/v1/agents")

    assert not any(call.done() for call in waiting), "answered while the capped calls still wait on the agent"
    assert probes == {"/healthz": 200, "/metrics": 200, "/readyz": 200}
    assert agents.status_code == 200, agents.text
    assert stalled.agent.callers == stalled.cap


def test_rollouts_by_address_and_manual_starts_share_the_agent_cap(stalled: Stalled) -> None:
    stalled.refusals()
    operator = stalled.api.client(Role.OPERATOR)
    by_address = {"package": "deadbeef", "addresses": [stalled.agent.address]}

    refused(operator.post("/api/v1/rollouts/plan", json=by_address), 503, "unavailable")
    refused(operator.post("/api/v1/rollouts", json=by_address), 503, "unavailable")
    refused(operator.post("/api/v1/agents/dma-1/start"), 503, "unavailable")
    by_cluster = {"package": "deadbeef", "cluster": CLUSTER}
    refused(operator.post("/api/v1/rollouts/plan", json=by_cluster), 404, "not_found")  # not capped: no agent asked


def test_the_capped_calls_answer_once_the_agent_hangs_up_and_the_cap_frees(stalled: Stalled) -> None:
    refusals = stalled.refusals()
    stalled.agent.wait_for_callers(stalled.cap)
    stalled.agent.close()

    waited = [call.result() for call in stalled.calls if call not in refusals]

    assert [r.status_code for r in waited] == [502] * stalled.cap
    late = stalled.api.client(Role.OPERATOR).post("/api/v1/agents/by-address", json={"address": "127.0.0.1:9"})
    assert late.status_code == 502, late.text  # admitted: the cap has room again


# -- bodies and uploads ------------------------------------------------------------------------------------


def connect(api: ApiHarness | ApiServer) -> socket.socket:
    server = api.server if isinstance(api, ApiHarness) else api
    return socket.create_connection(("127.0.0.1", server.port), timeout=30)


def request_head(method: str, path: str, token: str, length: int,
                 content_type: str = "multipart/form-data; boundary=b") -> bytes:
    return (f"{method} {path} HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {length}\r\n\r\n").encode()


def answer(connection: socket.socket) -> tuple[int, dict[str, Any]]:
    """The status and JSON body the server answers on ``connection``."""
    response = http.client.HTTPResponse(connection)
    response.begin()
    return response.status, json.loads(response.read())


MULTIPART_START = b'--b\r\nContent-Disposition: form-data; name="file"; filename="x.dmupgrade"\r\n\r\n'


@pytest.mark.parametrize(("path", "content_type"), [("/api/v1/packages", "multipart/form-data; boundary=b"),
                                                    ("/api/v1/agents", "application/json")])
def test_a_viewer_body_is_refused_with_403_before_any_of_it_is_read(
        serve: Callable[..., ApiHarness], path: str, content_type: str) -> None:
    api = serve()
    with connect(api) as connection:
        connection.sendall(request_head("POST", path, api.tokens[Role.VIEWER], 200 * 1024 * 1024, content_type))

        status, body = answer(connection)  # not one byte of the body was sent

    assert status == 403 and body["error"] == "forbidden", body
    assert "operator" in body["detail"]


def test_an_upload_past_the_concurrent_cap_is_refused_with_503_and_admitted_once_one_ends(
        serve: Callable[..., ApiHarness]) -> None:
    api = serve(api_concurrent_uploads=2)
    token = api.tokens[Role.OPERATOR]
    stalled = [connect(api) for _ in range(2)]
    for connection in stalled:
        connection.sendall(request_head("POST", "/api/v1/packages", token, 1024 * 1024) + MULTIPART_START)

    def not_a_zip() -> httpx.Response:
        return api.client(Role.OPERATOR).post("/api/v1/packages", files={"file": ("x.dmupgrade", b"not a zip")})

    assert "uploads" in refused(poll(not_a_zip, lambda r: r.status_code != 422), 503, "unavailable")
    head = api.head()
    for connection in stalled:
        connection.close()
    package = api.build()

    assert poll(lambda: api.upload(package), lambda r: r.status_code != 503).status_code == 201
    assert api.head() == head + 1


def poll(send: Callable[[], httpx.Response], until: Callable[[httpx.Response], bool]) -> httpx.Response:
    """Send until the answer satisfies ``until`` (60 s at most)."""
    for _ in range(600):
        response = send()
        if until(response):
            return response
        threading.Event().wait(0.1)
    raise AssertionError(f"still {response.status_code}: {response.text}")


# -- the token file ----------------------------------------------------------------------------------------


def _directory(path: Path) -> None:
    path.unlink()
    path.mkdir()


def _entries(**changes: object) -> Callable[[Path], None]:
    def change(path: Path) -> None:
        data = json.loads(path.read_text())
        data["tokens"][0].update(changes)
        path.write_text(json.dumps(data))
    return change


BREAKAGES: dict[str, Callable[[Path], object]] = {
    "a directory": _directory,
    "not json": lambda path: path.write_text("{not json"),
    "not utf-8": lambda path: path.write_bytes(b"\xff\xfe{}"),
    "nested 100,000 deep": lambda path: path.write_text("[" * 100_000 + "]" * 100_000),
    "a non-string hash": _entries(sha256=12345),
    "a non-ascii hash": _entries(sha256="é" * 64),
    "a non-string role": _entries(role=["admin"]),
    "a non-string name": _entries(name={"first": "vera"}),
    "a name with a newline": _entries(name="vera\nviewer"),
    "tokens not a list": lambda path: path.write_text('{"tokens": "vera"}'),
}


@pytest.mark.parametrize("breakage", BREAKAGES.values(), ids=BREAKAGES.keys())
def test_a_broken_token_file_answers_503_in_one_line_and_health_still_answers(
        serve: Callable[..., ApiHarness], breakage: Callable[[Path], object]) -> None:
    api = serve()
    breakage(api.settings.resolved_tokens_file)
    operator = api.client(Role.OPERATOR)

    for response in (operator.get("/api/v1/agents"), api.anonymous("Bearer not-a-token").get("/api/v1/agents"),
                     operator.post("/api/v1/agents", json={"name": "dma-9"})):
        assert refused(response, 503, "unavailable") == "the server cannot read its API tokens; its log says why"
    assert api.client(None).get("/healthz").status_code == 200


def test_a_token_file_whose_folder_is_a_file_answers_503(serve: Callable[..., ApiHarness], tmp_path: Path) -> None:
    api = serve()
    (tmp_path / "a-file").write_text("")
    api.token_file.path = tmp_path / "a-file" / "api-tokens.json"  # the file the server reads (not a missing one)

    refused(api.client(Role.VIEWER).get("/api/v1/agents"), 503, "unavailable")


# -- readiness ----------------------------------------------------------------------------------------------


def test_readyz_says_the_database_is_unreachable_without_its_address(serve: Callable[..., ApiHarness],
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    api = serve()
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]  # closed below: nothing listens there
    unreachable = sa.create_engine(f"postgresql+psycopg://nobody@127.0.0.1:{port}/dma", pool_pre_ping=True)
    monkeypatch.setattr(api.container, "engine", unreachable)

    response = api.client(None).get("/readyz")

    assert response.status_code == 503, response.text
    body = response.json()
    assert body["database"] is False and body["reasons"][0].startswith("database unreachable"), body
    assert str(port) not in response.text and "127.0.0.1" not in response.text, body
    unreachable.dispose()


# -- slow clients ---------------------------------------------------------------------------------------------


@pytest.fixture
def strict(serve: Callable[..., ApiHarness]) -> Iterator[tuple[ApiHarness, ApiServer]]:
    """The API served a second time with short request timeouts."""
    api = serve()
    server = ApiServer(api.app, timeouts=RequestTimeouts(head_seconds=0.3, body_idle_seconds=0.3))
    server.start()
    yield api, server
    server.stop()


def hung_up(connection: socket.socket) -> bool:
    """Whether the server closed ``connection`` without answering (within 30 s)."""
    try:
        return connection.recv(1) == b""
    except ConnectionResetError:
        return True


def test_a_client_that_connects_and_sends_nothing_is_disconnected(strict: tuple[ApiHarness, ApiServer]) -> None:
    with connect(strict[1]) as connection:
        assert hung_up(connection)


def test_a_client_trickling_a_request_head_is_disconnected_before_the_head_ends(
        strict: tuple[ApiHarness, ApiServer]) -> None:
    head = b"GET /healthz HTTP/1.1\r\nHost: api\r\nX-Padding: " + b"a" * 400 + b"\r\n\r\n"
    sent = 0
    with connect(strict[1]) as connection:
        connection.settimeout(0.05)  # the pace of the trickle: a byte every 50 ms
        for byte in head:
            try:
                connection.sendall(bytes([byte]))
                sent += 1
                if connection.recv(1) == b"":
                    break
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                break

    assert sent < len(head)


def test_a_client_that_stops_sending_its_body_is_disconnected(strict: tuple[ApiHarness, ApiServer]) -> None:
    api, server = strict
    with connect(server) as connection:
        connection.sendall(request_head("POST", "/api/v1/agents", api.tokens[Role.OPERATOR], 100,
                                        "application/json") + b'{"name": ')
        assert hung_up(connection)
