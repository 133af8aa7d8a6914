"""The ``AgentGateway`` port over HTTP: agents that speak ``docs/agent-protocol.md``.

An agent's address is ``host[:port]`` (``engine.addresses``; port 80 when none is given). The gateway
parses it and builds every URL from its parts: ``http``, the host, the port and the protocol's own
path; an address that does not parse (an event older than the rule) is never contacted: the call
fails (``AgentStepFailed``) telling the operator to register the agent again. The IP addresses a
host name resolves to are checked against the ``AddressPolicy`` before connecting, and the request
goes to a checked IP (with the name in ``Host``), so a name re-resolved in between (DNS rebinding)
cannot send it elsewhere; a literal IP is checked the same way.

What an agent sends back is bounded: a plain answer is read as it arrives, up to ``max_answer_bytes``
(1 MiB by default) and within ``timeout_seconds`` once its headers came; a step's stream line by line,
each line up to ``MAX_LINE_BYTES`` and within ``timeout_seconds`` once it began, all its lines together
(keep-alives aside) up to ``max_answer_bytes``; compressed answers are refused (the gateway asks for
none). Beyond a bound the answer is cut off and counts as one that breaks the protocol. Any text an
agent sends that ends up in a reason (its ``error``, or an excerpt of an answer that breaks the
protocol) is quoted as ``agent said: "..."``, control characters escaped, at most ``REASON_LIMIT``
characters.

Every request has a timeout (connecting, each read and write); connection errors, timeouts and 5xx
answers are sent again after an exponential backoff with full jitter, capped per wait, for a total span
(30 s by default: long enough to outlast an agent's restart). That is safe: every step carries its
idempotency key, the agent applies a key once, and a step re-sent while it still runs picks up the
running attempt. When the span is spent, an agent that never answered raises ``AgentUnreachable`` (so
does one that kept answering 502/503/504: something in front of it answered, not the agent), and one
that kept answering another 5xx raises ``AgentStepFailed`` naming the status; a step stream that broke
off without its outcome line raises ``AgentOutcomeUnknown``. A 4xx refusal, a failed step and an
answer that is not protocol JSON raise ``AgentStepFailed`` at once, with the agent's reason. A backoff
is cut short when the gateway's ``stopping`` event is set (``AgentUnreachable``, reason ``stopping``).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import random
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, Field, ValidationError

from dma_upgrade.engine.addresses import AddressPolicy, AgentEndpoint, IPAddress, parse_address
from dma_upgrade.engine.errors import (
    AgentOutcomeUnknown,
    AgentStepFailed,
    AgentUnreachable,
    InvalidInput,
    describe_validation,
)
from dma_upgrade.engine.packages import AgentFacts
from dma_upgrade.engine.ports import AgentAddress, AgentIdentity, PackageRef, PhaseReporter, StepOutcome, StepStatus
from dma_upgrade.engine.upgrade_events import Step
from dma_upgrade.engine.versions import InvalidVersion, parse_version

if TYPE_CHECKING:
    from dma_upgrade.adapters.settings import Settings

T = TypeVar("T")

UNREACHABLE_STATUSES = frozenset({502, 503, 504})
"""5xx answers that mean the agent itself did not answer (a proxy, or the agent not accepting work)."""

CALLER_HEADER = "X-Step-Caller"
"""The header of a step stream naming its caller; the caller's acknowledgements name it back."""

STOPPING = "stopping"
"""The reason of the ``AgentUnreachable`` raised when the gateway's ``stopping`` event cut a backoff short."""

MAX_LINE_BYTES = 64 * 1024
"""The longest line of a step's stream (a protocol line is one small JSON object)."""

REASON_LIMIT = 500
"""The most characters of an agent's own words (the error it reports) kept in a reason."""

EXCERPT_LIMIT = 80
"""The most characters of an answer that breaks the protocol quoted in a reason."""

_ESCAPES = {'"': '\\"', "\\": "\\\\"}

Resolver = Callable[[str, int], Sequence[IPAddress]]
"""Resolves a host name and port to the IP addresses to try, in order."""


def resolve(host: str, port: int) -> list[IPAddress]:
    """The IP addresses ``host`` resolves to (``socket.getaddrinfo``), in its order, without repeats."""
    found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(ipaddress.ip_address(str(info[4][0]).partition("%")[0]) for info in found))


def agent_said(text: str, limit: int = REASON_LIMIT) -> str:
    """``text`` quoted as an agent's words: ``agent said: "..."``, control characters, quotes and backslashes
    escaped, at most ``limit`` characters of it (a longer text says how much was left out)."""
    pieces: list[str] = []
    size = 0
    for character in text:
        piece = _ESCAPES.get(character) or (character if character.isprintable()
                                            else character.encode("unicode_escape").decode("ascii"))
        if size + len(piece) > limit:
            return f'agent said: "{"".join(pieces)}" (cut: {len(text)} characters in all)'
        pieces.append(piece)
        size += len(piece)
    return f'agent said: "{"".join(pieces)}"'


class Stopping(Protocol):
    """What the gateway needs of a "stopping" flag (a ``threading.Event``)."""

    def is_set(self) -> bool: ...

    def wait(self, timeout: float | None = None) -> bool: ...


def backoff_bound(retry: int, base_seconds: float, cap_seconds: float) -> float:
    """The longest wait before retry number ``retry`` (0 for the first): ``base * 2**retry``, at most ``cap``."""
    return min(cap_seconds, base_seconds * 2.0 ** min(retry, 64))


class _Retryable(Exception):
    """One attempt that may be retried: ``unreachable`` tells how it counts once the retries are spent
    (``AgentUnreachable``; otherwise ``AgentOutcomeUnknown`` for a step, ``AgentStepFailed`` for a question)."""

    def __init__(self, reason: str, *, unreachable: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.unreachable = unreachable


class _IdentityBody(BaseModel):
    name: str = Field(max_length=100)
    address: str = Field(max_length=300)
    cluster: str | None = Field(default=None, max_length=100)
    version: str = Field(max_length=100)
    facts: AgentFacts


def _excerpt(content: bytes | str) -> str:
    return agent_said(content.decode("utf-8", "replace") if isinstance(content, bytes) else content, EXCERPT_LIMIT)


def _json_object(content: bytes | str, status_code: int) -> Any:
    try:
        return json.loads(content)
    except (ValueError, RecursionError):
        raise _Garbage(f"the agent answered HTTP {status_code} with a body that is not protocol JSON: "
                       f"{_excerpt(content)}") from None


class _Garbage(Exception):
    """An answer that does not follow the protocol (not JSON, or not the expected shape)."""


def _reason_of(body: Any) -> str | None:
    """The agent's ``error`` (or ``detail``), quoted as its words."""
    if isinstance(body, dict):
        for field in ("error", "detail"):
            if body.get(field):
                value = body[field]
                return agent_said(value if isinstance(value, str) else json.dumps(value))
    return None


@dataclass(frozen=True)
class _Target:
    """Where one request goes: the ``http://IP[:port]`` origins to try in order, and the ``Host`` to name."""

    origins: tuple[str, ...]
    host: str


@dataclass(frozen=True)
class _Sent:
    """Where a request went (its URL, as built) and the ``Host`` it named: where a step's phases are acknowledged."""

    url: str
    host: str


class HttpAgentGateway:
    """An ``AgentGateway`` talking to agents over HTTP; thread-safe (one pooled ``httpx.Client``).

    ``timeout_seconds`` bounds connecting and each read (an install stream sends a line at least every
    second, so a long install is not a timeout).

    A request that failed in a way worth trying again is sent again until ``retry_seconds`` have passed
    since the first attempt (``retries``, when given, also caps how many times). Before retry number
    ``n`` (0 for the first) the gateway waits a random time between 0 and
    ``min(backoff_cap_seconds, backoff_seconds * 2**n)`` ("full jitter"), never past the end of the span,
    so the last attempt is made once the span has passed. ``jitter`` draws the fraction, in [0, 1).

    Waiting is done with ``stopping.wait`` (a real wait that setting ``stopping`` interrupts), or, when
    ``sleeper`` is given, by calling it; ``stopping`` is looked at before and after. ``clock`` measures
    the span (``time.monotonic``; with a ``sleeper`` and no ``clock``, the span is counted in the
    seconds the sleeper was asked to wait, so a fake sleeper means fake time). A set ``stopping`` ends
    a backoff at once with ``AgentUnreachable`` (reason ``stopping``).

    ``client`` replaces the gateway's own ``httpx.Client`` (which ``close`` then leaves open); its own is made at
    the first call, so a gateway that is wired but never used costs nothing.

    ``policy`` says which IP addresses agents may have (default: any but link-local); ``resolver`` turns
    a host name into IP addresses (``socket.getaddrinfo``); ``max_answer_bytes`` bounds every answer.
    """

    def __init__(self, timeout_seconds: float = 10.0, retries: int | None = None, backoff_seconds: float = 0.2,
                 *, retry_seconds: float = 30.0, backoff_cap_seconds: float = 5.0,
                 sleeper: Callable[[float], None] | None = None, clock: Callable[[], float] | None = None,
                 jitter: Callable[[], float] = random.random, stopping: Stopping | None = None,
                 client: httpx.Client | None = None, policy: AddressPolicy = AddressPolicy(),
                 resolver: Resolver = resolve, max_answer_bytes: int = 1024 * 1024) -> None:
        if timeout_seconds <= 0 or (retries is not None and retries < 0) or retry_seconds < 0:
            raise InvalidInput("the HTTP gateway needs a positive timeout and non-negative retries and retry span")
        if backoff_seconds <= 0 or backoff_cap_seconds < backoff_seconds:
            raise InvalidInput("the HTTP gateway needs a positive backoff and a backoff cap at least as long")
        if max_answer_bytes <= 0:
            raise InvalidInput("the HTTP gateway needs a positive answer size cap")
        self._policy = policy
        self._resolver = resolver
        self._max_answer = max_answer_bytes
        self._max_line = min(MAX_LINE_BYTES, max_answer_bytes)
        self._timeout = httpx.Timeout(timeout_seconds)
        self._timeout_seconds = timeout_seconds
        self._retries = retries
        self._retry_seconds = retry_seconds
        self._backoff = backoff_seconds
        self._backoff_cap = backoff_cap_seconds
        self._sleeper = sleeper
        self._jitter = jitter
        self._stopping: Stopping = stopping if stopping is not None else threading.Event()
        self._slept = 0.0
        self._slept_lock = threading.Lock()
        if clock is not None:
            self._clock = clock
        elif sleeper is not None:
            self._clock = self._slept_so_far
        else:
            self._clock = time.monotonic
        self._owns_client = client is None
        self._http = client
        self._client_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, *, stopping: Stopping | None = None,
                      policy: AddressPolicy | None = None) -> HttpAgentGateway:
        """The gateway ``DMA_UPGRADE_AGENT_TIMEOUT_SECONDS``, ``_RETRY_SECONDS``, ``_RETRY_BASE_SECONDS``,
        ``_RETRY_CAP_SECONDS``, ``_NETWORKS`` (unless ``policy`` is that setting parsed already) and
        ``_MAX_ANSWER_BYTES`` configure; ``stopping`` (the process's shutdown event) cuts its backoffs short."""
        return cls(timeout_seconds=settings.agent_timeout_seconds, retry_seconds=settings.agent_retry_seconds,
                   backoff_seconds=settings.agent_retry_base_seconds,
                   backoff_cap_seconds=settings.agent_retry_cap_seconds, stopping=stopping,
                   policy=policy or AddressPolicy.from_setting(settings.agent_networks),
                   max_answer_bytes=settings.agent_max_answer_bytes)

    def close(self) -> None:
        """Close the gateway's own connection pool (not an injected client)."""
        with self._client_lock:
            if self._owns_client and self._http is not None:
                self._http.close()

    def _client(self) -> httpx.Client:
        """The connection pool: the injected client, or this gateway's own, made at the first call."""
        client = self._http
        if client is None:
            with self._client_lock:
                if self._http is None:
                    self._http = httpx.Client(timeout=self._timeout)
                client = self._http
        return client

    def __enter__(self) -> HttpAgentGateway:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- the port ------------------------------------------------------------------------------

    def perform(self, agent: AgentAddress, step: Step, idempotency_key: str, package: PackageRef,
                on_phase: PhaseReporter | None = None) -> StepOutcome:
        """``POST /steps/{key}``; install phases stream back and reach ``on_phase`` in order.

        With ``on_phase`` the agent waits at each phase until ``on_phase`` returned (the gateway
        acknowledges the phase); if ``on_phase`` raises, the gateway tells the agent to stop and the
        error propagates. A key the agent is still running (sent by an engine that died, or by an
        attempt of this call whose connection broke) is picked up where it is: ``on_phase`` gets the
        phase the install is at now and every later one, then the step's outcome is returned.
        """
        path = f"/steps/{quote(idempotency_key, safe='')}"
        body = {"step": step.value, "package_sha256": package.sha256, "package_version": package.version,
                "options": package.options.model_dump(mode="json"), "web_only": package.web_only, "agent": agent.name,
                "phase_acks": on_phase is not None}

        def attempt() -> StepOutcome:
            with self._exchange(agent.name, step.value, agent.address, "POST", path, json=body) as (response, sent):
                return self._step_answer(agent, step, response, sent, on_phase)

        return self._call(agent.name, step.value, attempt, applies=True)

    def step_status(self, agent: AgentAddress, idempotency_key: str) -> StepStatus:
        """``GET /steps/{key}``: what the agent knows of the key."""
        path = f"/steps/{quote(idempotency_key, safe='')}"

        def attempt() -> StepStatus:
            with self._exchange(agent.name, "step_status", agent.address, "GET", path,
                                params={"agent": agent.name}) as (response, _):
                message = self._answer(agent.name, "step_status", response)
            try:
                return StepStatus(message["status"])
            except (KeyError, TypeError, ValueError):
                raise AgentStepFailed(agent.name, "step_status", "the agent's answer is not a step status: "
                                      f"{_excerpt(json.dumps(message))}") from None

        return self._call(agent.name, "step_status", attempt)

    def identify(self, address: str) -> AgentIdentity:
        """``GET /identity``: who answers at ``address``."""
        who = address if len(address) <= 60 and address.isprintable() else repr(address[:60])

        def attempt() -> AgentIdentity:
            with self._exchange(who, "identify", address, "GET", "/identity") as (response, _):
                message = self._answer(who, "identify", response)
            try:
                found = _IdentityBody.model_validate(message)
            except ValidationError as error:
                raise AgentStepFailed(who, "identify", "the agent's answer is not an identity: "
                                      f"{describe_validation(error)}") from None
            facts = found.facts.model_copy(update={"version": found.version})
            return AgentIdentity(name=found.name, address=found.address, cluster=found.cluster,
                                 version=found.version, facts=facts)

        return self._call(who, "identify", attempt)

    # -- internals -----------------------------------------------------------------------------

    def _target(self, who: str, operation: str, address: str) -> _Target:
        """Where a request to ``address`` goes: its IP addresses that the policy allows (``AgentStepFailed``
        for an address that does not parse or an IP the policy refuses; a name that does not resolve may be
        retried)."""
        try:
            endpoint = parse_address(address)
        except InvalidInput as error:
            raise AgentStepFailed(who, operation, f"not contacted: {error}; it was registered before addresses "
                                  f"were checked: register the agent again with a valid address") from None
        ips: Sequence[IPAddress]
        if endpoint.ip is not None:
            ips = [endpoint.ip]
        else:
            try:
                ips = self._resolver(endpoint.host, endpoint.effective_port)
            except OSError as error:
                raise _Retryable(f"cannot resolve {endpoint.host}: {error}", unreachable=True) from None
            if not ips:
                raise _Retryable(f"{endpoint.host} resolves to no address", unreachable=True)
        for ip in ips:
            reason = self._policy.refusal(ip)
            if reason is not None:
                shown = str(endpoint) if endpoint.ip is not None else f"{endpoint} (resolved to {ip})"
                raise AgentStepFailed(who, operation, f"not contacted: {shown} is refused: {reason}")
        return _Target(tuple(f"http://{AgentEndpoint(str(ip), endpoint.port)}" for ip in ips), endpoint.netloc)

    @contextlib.contextmanager
    def _exchange(self, who: str, operation: str, address: str, method: str, path: str,
                  **options: Any) -> Iterator[tuple[httpx.Response, _Sent]]:
        """Send a request to ``address`` (to the first of its IP addresses that accepts a connection) and
        yield the answer, not read yet, and where it went; the answer is closed afterwards."""
        target = self._target(who, operation, address)
        headers = {"Host": target.host, "Accept-Encoding": "identity"}
        for number, origin in enumerate(target.origins, start=1):
            client = self._client()
            request = client.build_request(method, f"{origin}{path}", headers=headers, timeout=self._timeout,
                                                 **options)
            try:
                response = client.send(request, stream=True)
            except httpx.ConnectError:
                if number == len(target.origins):
                    raise
                continue
            try:
                yield response, _Sent(f"{origin}{path}", target.host)
            finally:
                response.close()
            return

    def _call(self, who: str, operation: str, attempt: Callable[[], T], *, applies: bool = False) -> T:
        """Run ``attempt`` until it answers or the retry span is spent; map what is left to the port's errors.

        For an operation that ``applies`` a step, only the agent's own answer that it failed or refused the
        step says it was not applied: an answer that breaks the protocol, or 5xx answers to the end of the
        span, leave the step in doubt (``AgentOutcomeUnknown``), to be asked about before anything is re-sent."""
        deadline = self._clock() + self._retry_seconds
        retry = 0
        while True:
            try:
                return attempt()
            except httpx.TimeoutException as error:
                last = _Retryable(f"no answer within {self._timeout_seconds:g} s ({type(error).__name__})",
                                  unreachable=True)
            except httpx.TransportError as error:
                last = _Retryable(f"{type(error).__name__}: {error or 'connection failed'}", unreachable=True)
            except _Retryable as error:
                last = error
            except _Garbage as error:
                raise (AgentOutcomeUnknown if applies else AgentStepFailed)(who, operation, str(error)) from None
            now = self._clock()
            if now >= deadline or (self._retries is not None and retry >= self._retries):
                break
            self._pause(who, operation, min(self.backoff(retry), deadline - now))
            retry += 1
        attempts = retry + 1
        reason = f"{last.reason} (after {attempts} attempt{'s' if attempts > 1 else ''})"
        if last.unreachable:
            raise AgentUnreachable(who, operation, reason)
        if applies:
            raise AgentOutcomeUnknown(who, operation, reason)
        raise AgentStepFailed(who, operation, reason)

    def backoff(self, retry: int) -> float:
        """The wait before retry number ``retry`` (0 for the first): full jitter below ``backoff_bound``."""
        return self._jitter() * backoff_bound(retry, self._backoff, self._backoff_cap)

    def _pause(self, who: str, operation: str, seconds: float) -> None:
        """Wait ``seconds`` unless ``stopping`` is set, before or during the wait."""
        if self._stopping.is_set():
            raise AgentUnreachable(who, operation, STOPPING)
        if self._sleeper is None:
            interrupted = self._stopping.wait(seconds)
        else:
            self._sleeper(seconds)
            with self._slept_lock:
                self._slept += seconds
            interrupted = self._stopping.is_set()
        if interrupted:
            raise AgentUnreachable(who, operation, STOPPING)

    def _slept_so_far(self) -> float:
        with self._slept_lock:
            return self._slept

    def _content(self, response: httpx.Response) -> bytes:
        """The whole body of a plain answer, read as it comes: at most ``max_answer_bytes``, complete within the
        timeout once the headers came."""
        _refuse_encoded(response)
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self._max_answer:
            raise _Garbage(f"the agent's answer is {int(declared)} bytes, more than the {self._max_answer} "
                           f"bytes allowed (DMA_UPGRADE_AGENT_MAX_ANSWER_BYTES): not read")
        deadline = time.monotonic() + self._timeout_seconds
        content = bytearray()
        for chunk in response.iter_bytes():  # not decoded: compressed answers are refused
            content += chunk
            if len(content) > self._max_answer:
                raise _Garbage(f"the agent's answer is more than the {self._max_answer} bytes allowed "
                               f"(DMA_UPGRADE_AGENT_MAX_ANSWER_BYTES): cut off")
            if time.monotonic() > deadline:
                raise _Retryable(self._too_slow("answer"), unreachable=True)
        return bytes(content)

    def _lines(self, response: httpx.Response) -> Iterator[bytes]:
        """The lines of a step's stream, stripped, read as they come: each at most ``MAX_LINE_BYTES`` and complete
        within the timeout once it began, all but the blank ones (keep-alives) at most ``max_answer_bytes``."""
        _refuse_encoded(response)
        pending = bytearray()
        began: float | None = None
        total = 0
        for chunk in response.iter_bytes():  # not decoded: compressed answers are refused
            pending += chunk
            while (end := pending.find(b"\n")) >= 0:
                line = bytes(pending[:end]).strip()
                del pending[:end + 1]
                total += len(line)
                if total > self._max_answer:
                    raise _Garbage(f"the agent's step stream is more than the {self._max_answer} bytes allowed "
                                   f"(DMA_UPGRADE_AGENT_MAX_ANSWER_BYTES): cut off")
                yield line
                began = None
            if not pending:
                continue
            if len(pending) > self._max_line:
                raise _Garbage(f"the agent sent a line of more than {self._max_line} bytes: cut off")
            began = began or time.monotonic()
            if time.monotonic() - began > self._timeout_seconds:
                raise _Retryable(self._too_slow("line"), unreachable=True)
        if pending.strip():
            yield bytes(pending).strip()

    def _too_slow(self, what: str) -> str:
        return f"the agent's {what} did not arrive whole within {self._timeout_seconds:g} s"

    @staticmethod
    def _check_server_error(response: httpx.Response, content: bytes) -> None:
        if response.status_code >= 500:
            detail = _reason_of(_safe_json(content)) or _excerpt(content)
            raise _Retryable(f"the agent answered HTTP {response.status_code}: {detail}",
                             unreachable=response.status_code in UNREACHABLE_STATUSES)

    def _answer(self, who: str, operation: str, response: httpx.Response) -> Any:
        """The JSON of a plain (not streamed) answer; raises for 5xx, 4xx and garbage."""
        content = self._content(response)
        self._check_server_error(response, content)
        message = _json_object(content, response.status_code)
        if response.status_code >= 400:
            raise AgentStepFailed(who, operation, f"refused (HTTP {response.status_code}): "
                                  f"{_reason_of(message) or _excerpt(content)}")
        if response.status_code != 200:
            raise _Garbage(f"the agent answered HTTP {response.status_code}, not 200: {_excerpt(content)}")
        return message

    def _step_answer(self, agent: AgentAddress, step: Step, response: httpx.Response, sent: _Sent,
                     on_phase: PhaseReporter | None) -> StepOutcome:
        if response.status_code == 200 and response.headers.get("content-type", "").startswith(
                "application/x-ndjson"):
            caller = response.headers.get(CALLER_HEADER)
            current: tuple[str, int, int] | None = None
            for line in self._lines(response):
                if self._stopping.is_set():  # the process stops: the step is asked about when it starts again
                    raise AgentOutcomeUnknown(agent.name, step.value, "the engine stopped before the step ended")
                if not line:  # keep-alive: the install is still at the phase last reported
                    if current is not None and on_phase is not None:
                        on_phase(*current)
                    continue
                message = _json_object(line, 200)
                if isinstance(message, dict) and "phase" in message:
                    current = self._phase(sent, message, on_phase, caller)
                    continue
                return self._step_outcome(agent, step, 200, message, line)
            # Broken off: sent again, the step is picked up where it is (or answered from the agent's memory).
            raise _Retryable("the agent's step stream ended without an outcome", unreachable=False)
        content = self._content(response)
        self._check_server_error(response, content)
        message = _json_object(content, response.status_code)
        return self._step_outcome(agent, step, response.status_code, message, content)

    def _phase(self, sent: _Sent, message: dict[str, Any], on_phase: PhaseReporter | None,
               caller: str | None) -> tuple[str, int, int]:
        """Report a phase line to ``on_phase`` and acknowledge it; the phase, as reported."""
        phase, index, count = message.get("phase"), message.get("index"), message.get("count")
        if not (isinstance(phase, str) and isinstance(index, int) and isinstance(count, int)):
            raise _Garbage("the agent sent a phase line that does not follow the protocol: "
                           f"{_excerpt(json.dumps(message))}")
        if on_phase is not None:
            try:
                on_phase(phase, index, count)
            except BaseException:
                self._acknowledge(sent, index, caller, proceed=False)
                raise
            self._acknowledge(sent, index, caller, proceed=True)
        return phase, index, count

    def _acknowledge(self, sent: _Sent, index: int, caller: str | None, *, proceed: bool) -> None:
        """Best effort, to where the step's request went: an agent that hears nothing waits its own timeout, then
        goes on; one that another caller picked the step up from refuses it (409), and its stream goes on with the
        outcome only. The answer is not read."""
        body: dict[str, Any] = {"proceed": proceed}
        if caller is not None:
            body["caller"] = caller
        headers = {"Host": sent.host, "Accept-Encoding": "identity"}
        with contextlib.suppress(httpx.HTTPError), self._client().stream(
                "POST", f"{sent.url}/phases/{index}", json=body, headers=headers, timeout=self._timeout):
            pass

    @staticmethod
    def _step_outcome(agent: AgentAddress, step: Step, status_code: int, message: Any,
                      raw: bytes | str) -> StepOutcome:
        status = message.get("status") if isinstance(message, dict) else None
        if status_code == 200 and status == "succeeded":
            version_after = message.get("version_after")
            if version_after is not None:
                _check_version(version_after)
            return StepOutcome(version_after=version_after)
        reason = _reason_of(message)
        if status == "failed" and reason is not None:
            raise AgentStepFailed(agent.name, step.value, reason)
        if 400 <= status_code < 500:
            raise AgentStepFailed(agent.name, step.value,
                                  f"refused (HTTP {status_code}): {reason or _excerpt(raw)}")
        raise _Garbage(f"the agent answered HTTP {status_code} with something that is not a step outcome: "
                       f"{_excerpt(raw)}")


def _safe_json(content: bytes) -> Any:
    try:
        return json.loads(content)
    except (ValueError, RecursionError):
        return None


def _check_version(version: Any) -> None:
    """Refuse a reported version that is not a DataMiner version (it would be recorded as the agent's version)."""
    try:
        if isinstance(version, str):
            parse_version(version)
            return
    except InvalidVersion:
        pass
    raise _Garbage(f"the agent reported a version that is not a DataMiner version: {_excerpt(json.dumps(version))}")


def _refuse_encoded(response: httpx.Response) -> None:
    """Refuse a compressed answer (the gateway asks for none): its size would say nothing of what it expands to."""
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding != "identity":
        raise _Garbage(f"the agent's answer is compressed ({_excerpt(encoding)}): the protocol's answers are not")
