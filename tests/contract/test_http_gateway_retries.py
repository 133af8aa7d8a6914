"""The HTTP gateway's retry schedule: exponential backoff with full jitter, capped per wait, over a span,
cut short by a stopping event. Time is fake (an injected sleeper and clock) except where the case is
that a real wait is interrupted."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator

import httpx
import pytest

from dma_upgrade.adapters.agents.http_gateway import STOPPING, HttpAgentGateway, backoff_bound
from dma_upgrade.adapters.settings import Settings
from dma_upgrade.engine.errors import AgentStepFailed, AgentUnreachable, InvalidInput
from dma_upgrade.engine.ports import AgentAddress, PackageRef
from dma_upgrade.engine.upgrade_events import Step

AGENT = AgentAddress(name="dma-01", address="10.0.0.11:8101")
PACKAGE = PackageRef(sha256="ab" * 32, version="10.5.0.0-15000")


class FakeTime:
    """A sleeper and a clock: sleeping only moves the clock."""

    def __init__(self) -> None:
        self.now = 0.0
        self.waits: list[float] = []

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.waits.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


class NobodyAnswers:
    """An httpx transport where every request fails to connect; remembers when (on the fake clock) it was tried."""

    def __init__(self, time: FakeTime | None = None, status: int | None = None) -> None:
        self.time = time
        self.status = status
        self.tried_at: list[float] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.tried_at.append(self.time.now if self.time is not None else 0.0)
        if self.status is not None:
            return httpx.Response(self.status, json={"error": "the agent is restarting"})
        raise httpx.ConnectError("connection refused", request=request)


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


def gateway(transport: NobodyAnswers, **options: object) -> HttpAgentGateway:
    return HttpAgentGateway(client=httpx.Client(transport=httpx.MockTransport(transport)), **options)  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", [1, 2, 3, 20261130])
def test_the_retries_span_the_configured_time_with_full_jitter_capped_per_wait(fake_time: FakeTime, seed: int) -> None:
    nobody = NobodyAnswers(fake_time)
    draws = random.Random(seed)
    replay = random.Random(seed)
    with gateway(nobody, retry_seconds=30, backoff_seconds=0.2, backoff_cap_seconds=5, sleeper=fake_time.sleep,
                 clock=fake_time.clock, jitter=draws.random) as http, pytest.raises(AgentUnreachable) as caught:
        http.perform(AGENT, Step.UPLOAD, "u1:upload:1", PACKAGE)

    waits = fake_time.waits
    assert sum(waits) >= 30 - 1e-9  # the schedule covers the whole span ...
    assert nobody.tried_at[-1] >= 30 - 1e-9  # ... and the last attempt is made once it has passed
    assert len(nobody.tried_at) == len(waits) + 1
    assert f"after {len(waits) + 1} attempts" in caught.value.reason
    for retry, wait in enumerate(waits[:-1]):
        bound = backoff_bound(retry, 0.2, 5)
        assert 0 <= wait <= bound <= 5
        assert wait == pytest.approx(replay.random() * bound)  # full jitter: a uniform draw below the bound
    assert 0 <= waits[-1] <= backoff_bound(len(waits) - 1, 0.2, 5)  # the last one stops at the span's end
    assert any(wait < 0.9 * backoff_bound(retry, 0.2, 5) for retry, wait in enumerate(waits))  # jittered
    assert max(waits) <= 5


def test_the_bound_grows_exponentially_up_to_the_cap() -> None:
    assert [backoff_bound(n, 0.2, 5) for n in range(7)] == pytest.approx([0.2, 0.4, 0.8, 1.6, 3.2, 5, 5])
    assert backoff_bound(10_000, 0.2, 5) == 5


def test_retries_when_given_also_cap_the_number_of_attempts(fake_time: FakeTime) -> None:
    nobody = NobodyAnswers(fake_time)
    with gateway(nobody, retries=2, retry_seconds=30, sleeper=fake_time.sleep, clock=fake_time.clock) as http, \
            pytest.raises(AgentUnreachable, match="after 3 attempts"):
        http.step_status(AGENT, "u1:upload:1")
    assert len(nobody.tried_at) == 3


def test_a_zero_span_sends_once(fake_time: FakeTime) -> None:
    nobody = NobodyAnswers(fake_time)
    with gateway(nobody, retry_seconds=0, sleeper=fake_time.sleep) as http, \
            pytest.raises(AgentUnreachable, match="after 1 attempt"):
        http.identify(AGENT.address)
    assert fake_time.waits == []


def test_without_a_clock_a_fake_sleeper_is_the_time_of_the_span(fake_time: FakeTime) -> None:
    nobody = NobodyAnswers()
    with gateway(nobody, retry_seconds=12, backoff_cap_seconds=2, sleeper=fake_time.sleep) as http, \
            pytest.raises(AgentUnreachable):
        http.perform(AGENT, Step.UPLOAD, "u1:upload:1", PACKAGE)
    assert sum(fake_time.waits) == pytest.approx(12)


def test_a_5xx_other_than_unavailable_is_still_a_step_failure_once_the_span_is_spent(fake_time: FakeTime) -> None:
    nobody = NobodyAnswers(fake_time, status=500)
    with gateway(nobody, retry_seconds=3, sleeper=fake_time.sleep, clock=fake_time.clock) as http, \
            pytest.raises(AgentStepFailed, match="HTTP 500") as caught:
        http.perform(AGENT, Step.UPLOAD, "u1:upload:1", PACKAGE)
    assert not isinstance(caught.value, AgentUnreachable)
    assert len(nobody.tried_at) > 1


def test_a_refusal_is_not_retried(fake_time: FakeTime) -> None:
    nobody = NobodyAnswers(fake_time, status=409)
    with gateway(nobody, sleeper=fake_time.sleep, clock=fake_time.clock) as http, \
            pytest.raises(AgentStepFailed, match=r"refused \(HTTP 409\)"):
        http.perform(AGENT, Step.UPLOAD, "u1:upload:1", PACKAGE)
    assert len(nobody.tried_at) == 1
    assert fake_time.waits == []


def test_a_stopping_event_set_during_a_fake_wait_ends_the_retries(fake_time: FakeTime) -> None:
    stopping = threading.Event()

    def sleep_then_stop(seconds: float) -> None:
        fake_time.sleep(seconds)
        stopping.set()

    nobody = NobodyAnswers(fake_time)
    with gateway(nobody, sleeper=sleep_then_stop, clock=fake_time.clock, stopping=stopping) as http, \
            pytest.raises(AgentUnreachable) as caught:
        http.perform(AGENT, Step.UPLOAD, "u1:upload:1", PACKAGE)
    assert caught.value.reason == STOPPING
    assert len(fake_time.waits) == 1
    assert len(nobody.tried_at) == 1


def test_a_stopping_event_already_set_waits_nothing(fake_time: FakeTime) -> None:
    stopping = threading.Event()
    stopping.set()
    nobody = NobodyAnswers(fake_time)
    with gateway(nobody, sleeper=fake_time.sleep, clock=fake_time.clock, stopping=stopping) as http, \
            pytest.raises(AgentUnreachable) as caught:
        http.step_status(AGENT, "u1:upload:1")
    assert caught.value.reason == STOPPING
    assert fake_time.waits == []
    assert len(nobody.tried_at) == 1


class WatchedStopping(threading.Event):
    """A real stopping event that says when someone started waiting on it."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting = threading.Event()

    def wait(self, timeout: float | None = None) -> bool:
        self.waiting.set()
        return super().wait(timeout)


def test_setting_the_stopping_event_cuts_a_real_backoff_short() -> None:
    """An hour-long backoff, really waited: setting the event ends it at once, as AgentUnreachable("stopping")."""
    stopping = WatchedStopping()
    nobody = NobodyAnswers()
    raised: list[BaseException] = []

    def perform() -> None:
        try:
            http.perform(AGENT, Step.UPLOAD, "u1:upload:1", PACKAGE)
        except BaseException as error:
            raised.append(error)

    with gateway(nobody, retry_seconds=3600, backoff_seconds=3600, backoff_cap_seconds=3600, jitter=lambda: 1.0,
                 stopping=stopping) as http:
        worker = threading.Thread(target=perform, daemon=True)
        worker.start()
        assert stopping.waiting.wait(60), "the gateway never started its backoff"
        stopping.set()
        worker.join(60)  # a safety net: without the interruption this would be an hour
        assert not worker.is_alive(), "setting the stopping event did not cut the backoff short"
    assert len(raised) == 1 and isinstance(raised[0], AgentUnreachable), raised
    assert raised[0].reason == STOPPING
    assert len(nobody.tried_at) == 1


def test_bad_retry_options_are_refused() -> None:
    with pytest.raises(InvalidInput):
        HttpAgentGateway(backoff_seconds=0)
    with pytest.raises(InvalidInput):
        HttpAgentGateway(backoff_seconds=2, backoff_cap_seconds=1)
    with pytest.raises(InvalidInput):
        HttpAgentGateway(retry_seconds=-1)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    for name in ("DMA_UPGRADE_AGENT_RETRY_SECONDS", "DMA_UPGRADE_AGENT_RETRY_BASE_SECONDS",
                 "DMA_UPGRADE_AGENT_RETRY_CAP_SECONDS"):
        monkeypatch.delenv(name, raising=False)
    yield monkeypatch


def test_the_retry_settings_and_their_defaults(clean_env: pytest.MonkeyPatch) -> None:
    defaults = Settings()
    assert (defaults.agent_retry_seconds, defaults.agent_retry_base_seconds, defaults.agent_retry_cap_seconds) == (
        30.0, 0.2, 5.0)
    clean_env.setenv("DMA_UPGRADE_AGENT_RETRY_SECONDS", "0")
    clean_env.setenv("DMA_UPGRADE_AGENT_RETRY_BASE_SECONDS", "0.5")
    clean_env.setenv("DMA_UPGRADE_AGENT_RETRY_CAP_SECONDS", "2")
    settings = Settings()
    assert (settings.agent_retry_seconds, settings.agent_retry_base_seconds, settings.agent_retry_cap_seconds) == (
        0.0, 0.5, 2.0)
    with HttpAgentGateway.from_settings(settings) as http, \
            pytest.raises(AgentUnreachable, match="after 1 attempt"):  # a span of 0: sent once, no backoff
        http.identify(f"127.0.0.1:{_closed_port()}")
    clean_env.setenv("DMA_UPGRADE_AGENT_RETRY_CAP_SECONDS", "0.1")
    with pytest.raises(InvalidInput, match="cap"):
        HttpAgentGateway.from_settings(Settings())


def _closed_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
