"""A hostile agent on 127.0.0.1 cannot make the HTTP gateway go elsewhere, read without bound or wait forever.

Each test serves a tiny misbehaving HTTP server in this process: huge, compressed or deeply nested answers,
answers that drip in, 5,000-character errors full of control characters, a socket that never answers.
Memory is measured with ``tracemalloc`` (the peak of every Python allocation in the process, server
threads included); time is bounded by small timeouts and never asserted.
"""

from __future__ import annotations

import asyncio
import gzip
import ipaddress
import json
import socket
import tracemalloc
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from typing import Any

import pytest

from dma_upgrade.adapters.agents.http_gateway import MAX_LINE_BYTES, HttpAgentGateway, agent_said
from dma_upgrade.adapters.agents.simulated_gateway import modern_facts
from dma_upgrade.adapters.agents.simulator import serve_in_thread
from dma_upgrade.engine.addresses import AddressPolicy, IPAddress
from dma_upgrade.engine.errors import AgentOutcomeUnknown, AgentStepFailed, AgentUnreachable
from dma_upgrade.engine.ports import AgentAddress, PackageRef
from dma_upgrade.engine.upgrade_events import Step

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

PACKAGE = PackageRef(sha256="ab" * 32, version="10.5.0.0-15000")
MiB = 1024 * 1024
CHUNK = b"x" * 65536
IDENTITY = {"name": "dma-01", "address": "dma-01", "cluster": None, "version": "10.4.0.0-14112",
            "facts": modern_facts("10.4.0.0-14112").model_dump(mode="json")}


def hostile(status: int = 200, *, body: bytes = b"", content_type: bytes = b"application/json",
            headers: tuple[tuple[bytes, bytes], ...] = (), chunks: int = 0, chunk: bytes = CHUNK,
            drip_seconds: float = 0.0) -> tuple[App, list[Scope]]:
    """An ASGI app answering every request with ``body``, then ``chunks`` times ``chunk`` (``drip_seconds``
    apart); also returns the scopes of the requests it was sent."""
    seen: list[Scope] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        seen.append(scope)
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", content_type), *headers]})
        await send({"type": "http.response.body", "body": body, "more_body": chunks > 0})
        for number in range(chunks):
            if drip_seconds:
                await asyncio.sleep(drip_seconds)
            await send({"type": "http.response.body", "body": chunk, "more_body": number < chunks - 1})

    return app, seen


@pytest.fixture
def gateway() -> Iterator[HttpAgentGateway]:
    with HttpAgentGateway(timeout_seconds=2, retries=0) as gateway:
        yield gateway


def peak_bytes(call: Callable[[], object]) -> int:
    """The peak of Python allocations while ``call`` runs (whatever it raises is swallowed)."""
    tracemalloc.start()
    try:
        call()
    except Exception:  # the error is the test's business elsewhere; here only memory counts
        pass
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return peak


# -- addresses: only host[:port], only where the policy allows -----------------------------------------


@pytest.mark.parametrize("suffix", ["/admin/delete-everything?confirm=yes", "?confirm=yes", "#x", "/"])
def test_an_address_with_a_path_query_or_fragment_is_not_contacted(gateway: HttpAgentGateway, suffix: str) -> None:
    app, seen = hostile(body=json.dumps(IDENTITY).encode())
    with serve_in_thread(app) as served:
        with pytest.raises(AgentStepFailed, match=r"not contacted.*register the agent again") as caught:
            gateway.perform(AgentAddress("dma-01", served + suffix), Step.UPLOAD, "k1", PACKAGE)
        assert not isinstance(caught.value, AgentOutcomeUnknown)  # nothing was sent: the step is not applied
        with pytest.raises(AgentStepFailed, match="not contacted"):
            gateway.identify(served + suffix)
        with pytest.raises(AgentStepFailed, match="not contacted"):
            gateway.step_status(AgentAddress("dma-01", served + suffix), "k1")
    assert seen == []


def test_an_address_with_a_user_is_not_contacted(gateway: HttpAgentGateway) -> None:
    app, seen = hostile(body=json.dumps(IDENTITY).encode())
    with serve_in_thread(app) as served, pytest.raises(AgentStepFailed, match="it has a user"):
        gateway.identify(f"user:pass@{served}")
    assert seen == []


def test_an_ip_outside_the_agent_networks_is_not_contacted() -> None:
    app, seen = hostile(body=json.dumps(IDENTITY).encode())
    with serve_in_thread(app) as served, \
            HttpAgentGateway(retries=0, policy=AddressPolicy.from_setting("10.20.0.0/16")) as gateway, \
            pytest.raises(AgentStepFailed, match=r"outside the agent networks \(10.20.0.0/16"):
        gateway.identify(served)
    assert seen == []


def test_a_name_resolving_to_a_metadata_address_is_not_contacted() -> None:
    asked: list[str] = []

    def metadata(host: str, port: int) -> list[IPAddress]:
        asked.append(host)
        return [ipaddress.ip_address("169.254.169.254")]

    with HttpAgentGateway(retries=0, resolver=metadata) as gateway, \
            pytest.raises(AgentStepFailed, match=r"metadata.test:8080 \(resolved to 169.254.169.254\).*link-local"):
        gateway.perform(AgentAddress("dma-01", "metadata.test:8080"), Step.UPLOAD, "k1", PACKAGE)
    assert asked == ["metadata.test"]


def test_a_name_is_reached_at_the_ip_it_was_checked_at_naming_itself_in_host() -> None:
    """The request goes to a checked IP, not to whatever the name resolves to later (DNS rebinding); an IP
    that refuses the connection is skipped for the next one."""
    app, seen = hostile(body=json.dumps(IDENTITY).encode())
    with serve_in_thread(app) as served:
        port = int(served.rpartition(":")[2])

        def resolver(host: str, _: int) -> list[IPAddress]:
            return [ipaddress.ip_address("127.0.0.2"), ipaddress.ip_address("127.0.0.1")] if host == "dma-01.test" \
                else []

        with HttpAgentGateway(retries=0, resolver=resolver) as gateway:
            assert gateway.identify(f"DMA-01.test:{port}").name == "dma-01"
    assert [dict(scope["headers"])[b"host"] for scope in seen] == [f"dma-01.test:{port}".encode()]
    assert [scope["server"][0] for scope in seen] == ["127.0.0.1"]


# -- answers: bounded in size, nesting and time --------------------------------------------------------


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_a_huge_answer_is_cut_off_and_memory_stays_small(gateway: HttpAgentGateway, declared: bool) -> None:
    size = 32 * MiB
    headers = ((b"content-length", str(size).encode()),) if declared else ()
    app, _ = hostile(headers=headers, chunks=size // len(CHUNK))
    with serve_in_thread(app) as served:
        with pytest.raises(AgentStepFailed, match=r"bytes allowed .*(not read|cut off)") as caught:
            gateway.identify(served)
        assert len(caught.value.reason) < 300
        assert peak_bytes(lambda: gateway.identify(served)) < 4 * MiB
        assert peak_bytes(lambda: gateway.step_status(AgentAddress("dma-01", served), "k1")) < 4 * MiB
        with pytest.raises(AgentOutcomeUnknown, match="bytes allowed"):  # an answer that says nothing: in doubt
            gateway.perform(AgentAddress("dma-01", served), Step.UPLOAD, "k1", PACKAGE)


def test_a_step_stream_line_without_an_end_is_cut_off_and_memory_stays_small(gateway: HttpAgentGateway) -> None:
    app, _ = hostile(content_type=b"application/x-ndjson", body=b'{"phase": "', chunks=32 * MiB // len(CHUNK))
    with serve_in_thread(app) as served:
        address = AgentAddress("dma-01", served)
        with pytest.raises(AgentOutcomeUnknown, match=f"a line of more than {MAX_LINE_BYTES} bytes: cut off"):
            gateway.perform(address, Step.INSTALL, "k1", PACKAGE)
        assert peak_bytes(lambda: gateway.perform(address, Step.INSTALL, "k1", PACKAGE)) < 4 * MiB


def test_a_step_stream_of_endless_phases_is_cut_off_at_the_answer_cap() -> None:
    phase = b'{"phase": "Lock", "index": 0, "count": 12}\n'
    app, _ = hostile(content_type=b"application/x-ndjson", chunk=phase, chunks=10_000)
    with serve_in_thread(app) as served, HttpAgentGateway(retries=0, max_answer_bytes=4096) as gateway, \
            pytest.raises(AgentOutcomeUnknown, match="step stream is more than the 4096 bytes allowed"):
        gateway.perform(AgentAddress("dma-01", served), Step.INSTALL, "k1", PACKAGE)


def test_a_compressed_answer_is_refused_unread(gateway: HttpAgentGateway) -> None:
    bomb = gzip.compress(b"\0" * 64 * MiB, compresslevel=9)  # 64 KiB that expand to 64 MiB
    app, seen = hostile(body=bomb, headers=((b"content-encoding", b"gzip"),))
    with serve_in_thread(app) as served:
        with pytest.raises(AgentStepFailed, match=r'compressed \(agent said: "gzip"\)'):
            gateway.identify(served)
        assert peak_bytes(lambda: gateway.identify(served)) < 4 * MiB
    assert dict(seen[0]["headers"])[b"accept-encoding"] == b"identity"


def test_an_answer_nested_too_deep_is_not_protocol_json(gateway: HttpAgentGateway) -> None:
    app, _ = hostile(body=b"[" * 200_000)
    with serve_in_thread(app) as served:
        with pytest.raises(AgentStepFailed, match="not protocol JSON"):
            gateway.identify(served)
        with pytest.raises(AgentOutcomeUnknown, match="not protocol JSON"):
            gateway.perform(AgentAddress("dma-01", served), Step.UPLOAD, "k1", PACKAGE)


def test_an_answer_that_drips_in_is_given_up_once_the_timeout_is_spent() -> None:
    app, _ = hostile(body=b'{"status": ', chunk=b" ", chunks=1000, drip_seconds=0.02)
    with serve_in_thread(app) as served, HttpAgentGateway(timeout_seconds=0.3, retries=0) as gateway:
        with pytest.raises(AgentUnreachable, match=r"answer did not arrive whole within 0.3 s"):
            gateway.step_status(AgentAddress("dma-01", served), "k1")
        with pytest.raises(AgentUnreachable, match=r"answer did not arrive whole within 0.3 s"):
            gateway.identify(served)


def test_a_stream_line_that_drips_in_is_given_up_once_the_timeout_is_spent() -> None:
    app, _ = hostile(content_type=b"application/x-ndjson", body=b'{"phase": "Lock", ', chunk=b" ", chunks=1000,
                     drip_seconds=0.02)
    with serve_in_thread(app) as served, HttpAgentGateway(timeout_seconds=0.3, retries=0) as gateway, \
            pytest.raises(AgentUnreachable, match=r"line did not arrive whole within 0.3 s"):
        gateway.perform(AgentAddress("dma-01", served), Step.INSTALL, "k1", PACKAGE)


@pytest.fixture
def silent() -> Iterator[str]:
    """A port that accepts connections (the kernel does) and never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield f"127.0.0.1:{listener.getsockname()[1]}"


def test_every_call_to_an_agent_that_never_answers_times_out(silent: str) -> None:
    with HttpAgentGateway(timeout_seconds=0.2, retries=0) as gateway:
        for call in (lambda: gateway.identify(silent),
                     lambda: gateway.step_status(AgentAddress("dma-01", silent), "k1"),
                     lambda: gateway.perform(AgentAddress("dma-01", silent), Step.INSTALL, "k1", PACKAGE)):
            with pytest.raises(AgentUnreachable, match=r"no answer within 0.2 s \(ReadTimeout\)"):
                call()


# -- the agent's words: bounded, escaped, marked ---------------------------------------------------------


def test_a_5000_character_error_is_cut_to_500_and_marked_as_the_agents(gateway: HttpAgentGateway) -> None:
    app, _ = hostile(body=json.dumps({"status": "failed", "error": "e" * 5000}).encode())
    with serve_in_thread(app) as served, pytest.raises(AgentStepFailed) as caught:
        gateway.perform(AgentAddress("dma-01", served), Step.UPLOAD, "k1", PACKAGE)
    assert caught.value.reason == f'agent said: "{"e" * 500}" (cut: 5000 characters in all)'


@pytest.mark.parametrize("status", [409, 500])
def test_control_characters_in_an_agents_error_are_escaped(gateway: HttpAgentGateway, status: int) -> None:
    error = 'disk\nfull\r\x1b[31m "quoted" \\ \u202eevil\x00'
    app, _ = hostile(status, body=json.dumps({"status": "refused", "detail": error}).encode())
    with serve_in_thread(app) as served, pytest.raises(AgentStepFailed) as caught:
        gateway.perform(AgentAddress("dma-01", served), Step.UPLOAD, "k1", PACKAGE)
    reason = caught.value.reason
    assert reason.isprintable()
    assert r'agent said: "disk\nfull\r\x1b[31m \"quoted\" \\ \u202eevil\x00"' in reason
    assert reason.startswith("refused (HTTP 409): " if status == 409 else "the agent answered HTTP 500: ")


def test_a_text_body_is_quoted_as_the_agents_in_80_characters(gateway: HttpAgentGateway) -> None:
    app, _ = hostile(500, body=b"secret " * 1000, content_type=b"text/plain")
    with serve_in_thread(app) as served, pytest.raises(AgentStepFailed) as caught:
        gateway.identify(served)
    assert caught.value.reason.startswith(f'the agent answered HTTP 500: agent said: "{("secret " * 12)[:80]}" '
                                          f'(cut: 7000 characters in all)')


def test_a_version_that_is_not_a_dataminer_version_is_not_taken() -> None:
    body = json.dumps({"status": "succeeded", "version_after": "10.5\n" + "x" * 5000}).encode()
    app, _ = hostile(body=body)
    with serve_in_thread(app) as served, HttpAgentGateway(retries=0) as gateway, \
            pytest.raises(AgentOutcomeUnknown, match="not a DataMiner version") as caught:
        gateway.perform(AgentAddress("dma-01", served), Step.INSTALL, "k1", PACKAGE)
    assert len(caught.value.reason) < 300 and caught.value.reason.isprintable()


def test_agent_said_escapes_and_bounds_the_agents_words() -> None:
    assert agent_said("disk full") == 'agent said: "disk full"'
    assert agent_said('a"b\\c\n') == r'agent said: "a\"b\\c\n"'
    assert agent_said("\x1b" * 1000, limit=8) == r'agent said: "\x1b\x1b" (cut: 1000 characters in all)'
