"""What only the HTTP gateway does: timeouts, retries, broken servers, the protocol's own refusals.

Every test talks to a real uvicorn server on a loopback port (a served simulated agent, or a tiny app
that misbehaves on purpose).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from typing import Any

import httpx
import pytest

from dma_upgrade.adapters.agents.http_gateway import HttpAgentGateway
from dma_upgrade.adapters.agents.simulated_gateway import SimulatedAgent, SimulatedAgentGateway
from dma_upgrade.adapters.agents.simulator import agent_app, serve_in_thread
from dma_upgrade.engine.errors import AgentOutcomeUnknown, AgentStepFailed, AgentUnreachable
from dma_upgrade.engine.packages import INSTALL_PHASES
from dma_upgrade.engine.ports import AgentAddress, PackageRef, StepOutcome, StepStatus
from dma_upgrade.engine.upgrade_events import Step
from tests.contract.served_agent import served_agent
from tests.phase_reports import reached

OLD = "10.4.0.0-14112"
NEW = "10.5.0.0-15000"
PACKAGE = PackageRef(sha256="ab" * 32, version=NEW)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


def full() -> float:
    """A jitter that always draws the top of the range: the waits are the backoff bounds themselves."""
    return 1.0


class Recorder:
    """A fake sleeper: remembers the backoff it was asked to wait, waits nothing."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def fixed_answer(status: int, body: bytes, content_type: bytes = b"application/json",
                 delay: float = 0.0) -> tuple[Callable[[Scope, Receive, Send], Awaitable[None]], list[str]]:
    """A tiny ASGI app answering every request the same way; also returns the paths it was asked."""
    hits: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        hits.append(scope["path"])
        if delay:
            import asyncio

            await asyncio.sleep(delay)
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    return app, hits


def free_closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def agent() -> Iterator[tuple[SimulatedAgentGateway, AgentAddress]]:
    with served_agent(OLD) as served:
        yield served


def test_a_closed_port_is_retried_with_exponential_backoff_then_unreachable() -> None:
    sleeper = Recorder()
    address = f"127.0.0.1:{free_closed_port()}"
    with HttpAgentGateway(timeout_seconds=2, retries=3, backoff_seconds=0.2, sleeper=sleeper, jitter=full) as gateway:
        with pytest.raises(AgentUnreachable) as caught:
            gateway.perform(AgentAddress("dma-01", address), Step.UPLOAD, "k1", PACKAGE)
        assert sleeper.waits == [0.2, 0.4, 0.8]
        assert caught.value.agent == "dma-01"
        assert caught.value.step == "upload"
        assert "ConnectError" in caught.value.reason
        assert "after 4 attempts" in caught.value.reason
        with pytest.raises(AgentUnreachable):
            gateway.step_status(AgentAddress("dma-01", address), "k1")
        with pytest.raises(AgentUnreachable, match="identify"):
            gateway.identify(address)


def test_unreachable_is_a_step_failure() -> None:
    with HttpAgentGateway(retries=0) as gateway, pytest.raises(AgentStepFailed):
        gateway.perform(AgentAddress("dma-01", f"127.0.0.1:{free_closed_port()}"), Step.UPLOAD, "k1", PACKAGE)


def test_a_server_answering_500_is_retried_then_a_step_in_doubt_naming_the_status() -> None:
    app, hits = fixed_answer(500, b"Internal Server Error", b"text/plain")
    sleeper = Recorder()
    with serve_in_thread(app) as address, HttpAgentGateway(retries=2, sleeper=sleeper, jitter=full) as gateway:
        with pytest.raises(AgentOutcomeUnknown) as caught:  # a 500 does not say the step was not applied
            gateway.perform(AgentAddress("dma-01", address), Step.INSTALL, "k1", PACKAGE)
        assert not isinstance(caught.value, AgentUnreachable)
        assert caught.value.reason.startswith('the agent answered HTTP 500: agent said: "Internal Server Error"')
        assert len(hits) == 3
        assert sleeper.waits == [0.2, 0.4]
        with pytest.raises(AgentStepFailed, match="HTTP 500"):
            gateway.step_status(AgentAddress("dma-01", address), "k1")
        with pytest.raises(AgentStepFailed, match="HTTP 500"):
            gateway.identify(address)


def test_a_server_answering_503_counts_as_unreachable() -> None:
    app, hits = fixed_answer(503, b'{"status": "unavailable", "error": "the agent did not answer"}')
    with serve_in_thread(app) as address, HttpAgentGateway(retries=1, sleeper=Recorder()) as gateway:
        with pytest.raises(AgentUnreachable, match="the agent did not answer"):
            gateway.perform(AgentAddress("dma-01", address), Step.UPLOAD, "k1", PACKAGE)
        assert len(hits) == 2


@pytest.mark.parametrize("body", [b"<html>oops</html>", b'{"hello": "world"}', b"[1, 2"])
def test_a_server_answering_garbage_leaves_the_step_in_doubt_and_is_not_retried(body: bytes) -> None:
    app, hits = fixed_answer(200, body, b"text/html")
    with serve_in_thread(app) as address, HttpAgentGateway(retries=3, sleeper=Recorder()) as gateway:
        with pytest.raises(AgentOutcomeUnknown) as caught:  # it is asked about before anything is re-sent
            gateway.perform(AgentAddress("dma-01", address), Step.INSTALL, "k1", PACKAGE)
        assert not isinstance(caught.value, AgentUnreachable)
        assert "not protocol JSON" in caught.value.reason or "not a step outcome" in caught.value.reason
        assert len(hits) == 1
        with pytest.raises(AgentStepFailed, match="not") as asked:
            gateway.step_status(AgentAddress("dma-01", address), "k1")
        assert not isinstance(asked.value, AgentOutcomeUnknown)  # a question applies nothing
        with pytest.raises(AgentStepFailed, match="not"):
            gateway.identify(address)


def test_garbage_inside_an_install_stream_leaves_the_step_in_doubt() -> None:
    app, _ = fixed_answer(200, b'{"phase": "Lock", "index": 0, "count": 12}\nthis is not json\n',
                          b"application/x-ndjson")
    with serve_in_thread(app) as address, HttpAgentGateway(retries=0) as gateway, \
            pytest.raises(AgentOutcomeUnknown, match="not protocol JSON"):
        gateway.perform(AgentAddress("dma-01", address), Step.INSTALL, "k1", PACKAGE)


def test_a_stream_that_ends_without_an_outcome_is_sent_again_then_in_doubt() -> None:
    app, hits = fixed_answer(200, b'{"phase": "Lock", "index": 0, "count": 12}\n', b"application/x-ndjson")
    with serve_in_thread(app) as address, HttpAgentGateway(retries=2, sleeper=Recorder()) as gateway, \
            pytest.raises(AgentOutcomeUnknown, match="ended without an outcome") as caught:
        gateway.perform(AgentAddress("dma-01", address), Step.INSTALL, "k1", PACKAGE)
    assert not isinstance(caught.value, AgentUnreachable)
    assert len(hits) == 3


def test_a_server_slower_than_the_timeout_is_unreachable() -> None:
    app, hits = fixed_answer(200, b'{"status": "succeeded"}', delay=0.6)
    started = time.monotonic()
    with serve_in_thread(app) as address, \
            HttpAgentGateway(timeout_seconds=0.2, retries=1, sleeper=Recorder()) as gateway:
        with pytest.raises(AgentUnreachable, match=r"no answer within 0.2 s \(ReadTimeout\)"):
            gateway.perform(AgentAddress("dma-01", address), Step.UPLOAD, "k1", PACKAGE)
        assert len(hits) == 2
    assert time.monotonic() - started < 5


def test_a_transient_outage_is_hidden_by_a_retry_and_the_step_applies_once(
        agent: tuple[SimulatedAgentGateway, AgentAddress]) -> None:
    simulation, address = agent
    simulation.unreachable("dma-01", times=2)
    sleeper = Recorder()
    with HttpAgentGateway(retries=3, sleeper=sleeper, jitter=full) as gateway:
        assert gateway.perform(address, Step.INSTALL, "k1", PACKAGE) == StepOutcome(version_after=NEW)
        assert sleeper.waits == [0.2, 0.4]
        assert gateway.perform(address, Step.INSTALL, "k1", PACKAGE) == StepOutcome(version_after=NEW)
    assert [e.key for e in simulation.journal_of("dma-01")] == ["k1"]


def test_a_failed_step_is_not_retried(agent: tuple[SimulatedAgentGateway, AgentAddress]) -> None:
    simulation, address = agent
    simulation.fail("dma-01", Step.UPLOAD, times=1, reason="disk full")
    with HttpAgentGateway(retries=3, sleeper=Recorder()) as gateway:
        with pytest.raises(AgentStepFailed, match="disk full") as caught:
            gateway.perform(address, Step.UPLOAD, "k1", PACKAGE)
        assert not isinstance(caught.value, AgentUnreachable)
        assert gateway.step_status(address, "k1") is StepStatus.FAILED
    assert simulation.journal_of("dma-01") == []


def test_a_key_reused_for_another_step_is_refused(agent: tuple[SimulatedAgentGateway, AgentAddress]) -> None:
    _, address = agent
    with HttpAgentGateway(retries=3, sleeper=Recorder()) as gateway:
        gateway.perform(address, Step.UPLOAD, "k1", PACKAGE)
        with pytest.raises(AgentStepFailed, match=r"refused \(HTTP 409\).*was used for upload"):
            gateway.perform(address, Step.INSTALL, "k1", PACKAGE)


def test_an_agent_answering_under_another_name_is_refused(agent: tuple[SimulatedAgentGateway, AgentAddress]) -> None:
    simulation, address = agent
    impostor = AgentAddress(name="dma-99", address=address.address)
    with HttpAgentGateway(retries=0) as gateway:
        with pytest.raises(AgentStepFailed, match="this is agent dma-01, not dma-99"):
            gateway.perform(impostor, Step.UPLOAD, "k1", PACKAGE)
        with pytest.raises(AgentStepFailed, match="this is agent dma-01, not dma-99"):
            gateway.step_status(impostor, "k1")
    assert simulation.journal_of("dma-01") == []


def test_a_step_longer_than_the_timeout_is_kept_alive() -> None:
    slow = SimulatedAgentGateway([SimulatedAgent(name="dma-01", address="127.0.0.1:1")], sleeper=time.sleep,
                                 step_seconds={Step.UPLOAD: 0.6, Step.INSTALL: 0.9})
    with serve_in_thread(agent_app(slow, "dma-01", heartbeat_seconds=0.05)) as served, \
            HttpAgentGateway(timeout_seconds=0.3, retries=0) as gateway:
        here = AgentAddress(name="dma-01", address=served)
        assert gateway.perform(here, Step.UPLOAD, "k1", PACKAGE) == StepOutcome()
        phases: list[str] = []
        assert gateway.perform(here, Step.INSTALL, "k2", PACKAGE,
                               on_phase=lambda phase, index, count: phases.append(phase)).version_after == NEW
        assert reached(phases) == list(INSTALL_PHASES)


def test_an_error_in_on_phase_stops_the_install_on_the_agent(
        agent: tuple[SimulatedAgentGateway, AgentAddress]) -> None:
    simulation, address = agent

    def on_phase(phase: str, index: int, count: int) -> None:
        if phase == "Kill":
            raise RuntimeError("the engine lost its database")

    with HttpAgentGateway(retries=0) as gateway:
        with pytest.raises(RuntimeError, match="lost its database"):
            gateway.perform(address, Step.INSTALL, "k1", PACKAGE, on_phase=on_phase)
        deadline = time.monotonic() + 5
        while gateway.step_status(address, "k1") is StepStatus.RUNNING and time.monotonic() < deadline:
            time.sleep(0.01)
        assert gateway.step_status(address, "k1") is StepStatus.FAILED
        assert gateway.identify(address.address).version == OLD
    assert simulation.journal_of("dma-01") == []


def test_an_agent_goes_on_when_the_engine_stops_acknowledging_phases() -> None:
    simulation = SimulatedAgentGateway([SimulatedAgent(name="dma-01", address="127.0.0.1:1")])
    app = agent_app(simulation, "dma-01", phase_ack_timeout=0.1, heartbeat_seconds=0.05)
    with serve_in_thread(app) as served, httpx.Client(base_url=f"http://{served}") as client:
        body = {"step": "install", "package_sha256": "ab" * 32, "package_version": NEW, "phase_acks": True}
        with client.stream("POST", "/steps/k1", json=body) as response:
            lines = [line for line in response.iter_lines() if line.strip()]
    assert len(lines) == len(INSTALL_PHASES) + 1
    assert '"succeeded"' in lines[-1]
    assert simulation.agent("dma-01").version == NEW


def test_identify_reads_the_agents_identity(agent: tuple[SimulatedAgentGateway, AgentAddress]) -> None:
    _, address = agent
    with HttpAgentGateway() as gateway:
        identity = gateway.identify(address.address)
    assert (identity.name, identity.address, identity.cluster, identity.version) == (
        "dma-01", address.address, "north", OLD)
    assert identity.facts.version == OLD


def test_concurrent_calls_share_one_gateway(agent: tuple[SimulatedAgentGateway, AgentAddress]) -> None:
    simulation, address = agent
    errors: list[BaseException] = []
    with HttpAgentGateway() as gateway:
        def work(number: int) -> None:
            try:
                gateway.perform(address, Step.UPLOAD, f"k{number % 3}", PACKAGE)
            except BaseException as error:  # pragma: no cover - reported below
                errors.append(error)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(9)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
    assert errors == []
    assert sorted(e.key for e in simulation.journal_of("dma-01")) == ["k0", "k1", "k2"]


def test_a_keep_alive_reports_the_phase_the_install_is_still_at_again_without_acknowledging_it() -> None:
    lock, disable = b'{"phase": "Lock", "index": 0, "count": 12}\n', b'{"phase": "Disable", "index": 1, "count": 12}\n'
    app, hits = fixed_answer(200, b"\n" + lock + b"\n\n\n" + disable + b"\n\n" + b'{"status": "succeeded"}\n',
                             b"application/x-ndjson")
    reported: list[tuple[str, int, int]] = []
    with serve_in_thread(app) as address, HttpAgentGateway(retries=0) as gateway:
        gateway.perform(AgentAddress("dma-01", address), Step.INSTALL, "k1", PACKAGE,
                        lambda phase, index, count: reported.append((phase, index, count)))
    assert reported == [("Lock", 0, 12)] * 4 + [("Disable", 1, 12)] * 3  # a keep-alive before any phase: none
    assert [hit.rsplit("/", 2)[-2:] for hit in hits if "/phases/" in hit] == [["phases", "0"], ["phases", "1"]]
