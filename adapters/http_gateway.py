"""The ``AgentGateway`` port over HTTP: agents that speak ``docs/agent-protocol.md``.

An agent is reached at ``http://{AgentAddress.address}`` (``host:port``, or ``host`` for port 80).
Every request has a timeout; connection errors, timeouts and 5xx answers are retried with exponential
backoff (safe: every step carries its idempotency key, and the agent applies a key once). When the retry
budget is spent, an agent that never answered raises ``AgentUnreachable`` (so does one that kept
answering 502/503/504: something in front of it answered, not the agent), and one that kept answering
another 5xx raises ``AgentStepFailed`` naming the status. A 4xx refusal, a failed step and an answer
that is not protocol JSON raise ``AgentStepFailed`` at once, with the agent's reason.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ValidationError

from engine.errors import AgentStepFailed, AgentUnreachable, InvalidInput
from engine.packages import AgentFacts
from engine.ports import AgentAddress, AgentIdentity, PackageRef, PhaseReporter, StepOutcome, StepStatus
from engine.upgrade_events import Step

T = TypeVar("T")

UNREACHABLE_STATUSES = frozenset({502, 503, 504})
"""5xx answers that mean the agent itself did not answer (a proxy, or the agent not accepting work)."""


class _Retryable(Exception):
    """One attempt that may be retried: ``unreachable`` tells how it counts once retries are spent."""

    def __init__(self, reason: str, *, unreachable: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.unreachable = unreachable


class _IdentityBody(BaseModel):
    name: str
    address: str
    cluster: str | None = None
    version: str
    facts: AgentFacts


def _excerpt(content: bytes | str, limit: int = 80) -> str:
    text = content.decode("utf-8", "replace") if isinstance(content, bytes) else content
    text = " ".join(text.split())
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _json_object(content: bytes | str, status_code: int) -> Any:
    try:
        return json.loads(content)
    except ValueError:
        raise _Garbage(f"the agent answered HTTP {status_code} with a body that is not protocol JSON: "
                       f"{_excerpt(content)}") from None


class _Garbage(Exception):
    """An answer that does not follow the protocol (not JSON, or not the expected shape)."""


def _reason_of(body: Any) -> str | None:
    if isinstance(body, dict):
        for field in ("error", "detail"):
            if body.get(field):
                value = body[field]
                return value if isinstance(value, str) else json.dumps(value)
    return None


class HttpAgentGateway:
    """An ``AgentGateway`` talking to agents over HTTP; thread-safe (one pooled ``httpx.Client``).

    ``timeout_seconds`` bounds connecting and each read (an install stream sends a line at least every
    second, so a long install is not a timeout). ``retries`` is how many times a failed request is sent
    again, after ``backoff_seconds``, then twice that, and so on (waited with ``sleeper``). ``client``
    replaces the gateway's own ``httpx.Client`` (which ``close`` then leaves open).
    """

    def __init__(self, timeout_seconds: float = 10.0, retries: int = 3, backoff_seconds: float = 0.2,
                 sleeper: Callable[[float], None] = time.sleep, client: httpx.Client | None = None) -> None:
        if timeout_seconds <= 0 or retries < 0 or backoff_seconds < 0:
            raise InvalidInput("the HTTP gateway needs a positive timeout and non-negative retries and backoff")
        self._timeout = httpx.Timeout(timeout_seconds)
        self._timeout_seconds = timeout_seconds
        self._retries = retries
        self._backoff = backoff_seconds
        self._sleeper = sleeper
        self._owns_client = client is None
        self._client = client if client is not None else httpx.Client(timeout=self._timeout)

    def close(self) -> None:
        """Close the gateway's own connection pool (not an injected client)."""
        if self._owns_client:
            self._client.close()

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
        error propagates.
        """
        url = self._url(agent.address, f"/steps/{quote(idempotency_key, safe='')}")
        body = {"step": step.value, "package_sha256": package.sha256, "package_version": package.version,
                "agent": agent.name, "phase_acks": on_phase is not None}

        def attempt() -> StepOutcome:
            with self._client.stream("POST", url, json=body, timeout=self._timeout) as response:
                return self._step_answer(agent, step, url, response, on_phase)

        return self._call(agent.name, step.value, attempt)

    def step_status(self, agent: AgentAddress, idempotency_key: str) -> StepStatus:
        """``GET /steps/{key}``: what the agent knows of the key."""
        url = self._url(agent.address, f"/steps/{quote(idempotency_key, safe='')}")

        def attempt() -> StepStatus:
            response = self._client.get(url, params={"agent": agent.name}, timeout=self._timeout)
            message = self._answer(agent.name, "step_status", response)
            try:
                return StepStatus(message["status"])
            except (KeyError, TypeError, ValueError):
                raise AgentStepFailed(agent.name, "step_status",
                                      f"the agent's answer is not a step status: {_excerpt(response.text)}") from None

        return self._call(agent.name, "step_status", attempt)

    def identify(self, address: str) -> AgentIdentity:
        """``GET /identity``: who answers at ``address``."""
        url = self._url(address, "/identity")

        def attempt() -> AgentIdentity:
            response = self._client.get(url, timeout=self._timeout)
            message = self._answer(address, "identify", response)
            try:
                found = _IdentityBody.model_validate(message)
            except ValidationError as error:
                raise AgentStepFailed(address, "identify", "the agent's answer is not an identity: "
                                      f"{error.errors()[0]['loc']} {error.errors()[0]['msg']}") from None
            facts = found.facts.model_copy(update={"version": found.version})
            return AgentIdentity(name=found.name, address=found.address, cluster=found.cluster,
                                 version=found.version, facts=facts)

        return self._call(address, "identify", attempt)

    # -- internals -----------------------------------------------------------------------------

    @staticmethod
    def _url(address: str, path: str) -> str:
        return f"http://{address}{path}"

    def _call(self, who: str, operation: str, attempt: Callable[[], T]) -> T:
        """Run ``attempt`` with the retry budget; map what is left to the port's errors."""
        last: _Retryable | None = None
        for number in range(self._retries + 1):
            if number:
                self._sleeper(self._backoff * 2 ** (number - 1))
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
                raise AgentStepFailed(who, operation, str(error)) from None
        assert last is not None
        attempts = self._retries + 1
        reason = f"{last.reason} (after {attempts} attempt{'s' if attempts > 1 else ''})"
        if last.unreachable:
            raise AgentUnreachable(who, operation, reason)
        raise AgentStepFailed(who, operation, reason)

    @staticmethod
    def _check_server_error(response: httpx.Response, content: bytes) -> None:
        if response.status_code >= 500:
            detail = _reason_of(_safe_json(content)) or _excerpt(content)
            raise _Retryable(f"the agent answered HTTP {response.status_code}: {detail}",
                             unreachable=response.status_code in UNREACHABLE_STATUSES)

    def _answer(self, who: str, operation: str, response: httpx.Response) -> Any:
        """The JSON of a plain (not streamed) answer; raises for 5xx, 4xx and garbage."""
        content = response.read()
        self._check_server_error(response, content)
        message = _json_object(content, response.status_code)
        if response.status_code >= 400:
            raise AgentStepFailed(who, operation, f"refused (HTTP {response.status_code}): "
                                  f"{_reason_of(message) or _excerpt(content)}")
        if response.status_code != 200:
            raise _Garbage(f"the agent answered HTTP {response.status_code}, not 200: {_excerpt(content)}")
        return message

    def _step_answer(self, agent: AgentAddress, step: Step, url: str, response: httpx.Response,
                     on_phase: PhaseReporter | None) -> StepOutcome:
        if response.status_code == 200 and response.headers.get("content-type", "").startswith(
                "application/x-ndjson"):
            for line in response.iter_lines():
                if not line.strip():
                    continue  # keep-alive
                message = _json_object(line, 200)
                if isinstance(message, dict) and "phase" in message:
                    self._phase(agent, step, url, message, on_phase)
                    continue
                return self._step_outcome(agent, step, 200, message, line)
            raise _Garbage("the agent's step stream ended without an outcome")
        content = response.read()
        self._check_server_error(response, content)
        message = _json_object(content, response.status_code)
        return self._step_outcome(agent, step, response.status_code, message, content)

    def _phase(self, agent: AgentAddress, step: Step, url: str, message: dict[str, Any],
               on_phase: PhaseReporter | None) -> None:
        phase, index, count = message.get("phase"), message.get("index"), message.get("count")
        if not (isinstance(phase, str) and isinstance(index, int) and isinstance(count, int)):
            raise _Garbage(f"the agent sent a phase line that does not follow the protocol: {message!r}")
        if on_phase is None:
            return
        try:
            on_phase(phase, index, count)
        except BaseException:
            self._acknowledge(url, index, proceed=False)
            raise
        self._acknowledge(url, index, proceed=True)

    def _acknowledge(self, url: str, index: int, *, proceed: bool) -> None:
        """Best effort: an agent that hears nothing waits its own timeout, then goes on."""
        with contextlib.suppress(httpx.HTTPError):
            self._client.post(f"{url}/phases/{index}", json={"proceed": proceed}, timeout=self._timeout)

    @staticmethod
    def _step_outcome(agent: AgentAddress, step: Step, status_code: int, message: Any,
                      raw: bytes | str) -> StepOutcome:
        status = message.get("status") if isinstance(message, dict) else None
        if status_code == 200 and status == "succeeded":
            version_after = message.get("version_after")
            if version_after is not None and not isinstance(version_after, str):
                raise _Garbage(f"the agent reported a version that is not text: {version_after!r}")
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
    except ValueError:
        return None
