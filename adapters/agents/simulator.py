"""A simulated DataMiner Agent served over HTTP: the agent side of ``docs/agent-protocol.md``.

The behaviour is the ``SimulatedAgentGateway``'s (one lock per agent, idempotency keys, phases, faults);
this module only puts it behind the protocol and, for ``dma-upgrade agent-sim``, keeps the agent's
memory in a JSON state file so that it survives the simulator's own restarts.

- ``agent_app(simulation, name, ...)`` serves one agent of a (possibly shared) ``SimulatedAgentGateway``:
  the gateway contract suite serves a whole simulated cluster this way, one port per agent, and still
  injects faults into the in-process simulation.
- ``create_agent_app(spec, state_file, step_seconds, fail)`` is the stand-alone simulator: one agent
  that really takes its time (``time.sleep``) and remembers its version, journal and keys.
- ``serve_in_thread`` and ``serve_simulation`` run such apps on free loopback ports in this process;
  ``LoopbackRoutes`` is an httpx transport sending the agents' own addresses to those ports.

A step runs in a thread of its own, as an attempt that requests follow: the request that started it, and
any later request for the same key while it runs (an engine picking up a step in progress), which
becomes the attempt's caller: it gets the phase the install is at and every later one, and only its
acknowledgements count. Earlier callers keep their stream, for the outcome only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeAlias

import httpx
import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, Field
from starlette.types import Receive, Scope, Send

from dma_upgrade.adapters.agents.simulated_gateway import JournalEntry, SimulatedAgent, SimulatedAgentGateway
from dma_upgrade.engine.errors import AgentStepFailed, AgentUnreachable, InvalidInput
from dma_upgrade.engine.ports import PackageRef, PhaseReporter, StepOutcome, StepStatus
from dma_upgrade.engine.upgrade_events import Step, UpgradeOptions

NDJSON = "application/x-ndjson"
CALLER_HEADER = "X-Step-Caller"
"""The header of a step stream naming its caller (the id its acknowledgements give as ``caller``)."""
STATE_FORMAT = 1
"""The version of the state file's layout."""


class StepRequest(BaseModel):
    """The body of ``POST /steps/{key}``."""

    step: Step
    package_sha256: str = Field(min_length=1)
    package_version: str = Field(min_length=1)
    options: UpgradeOptions = UpgradeOptions()
    """The upgrade's options (absent: the documented defaults); an unknown option is refused (422)."""
    web_only: bool = False
    """A Web package: the install leaves DataMiner running, on its version."""
    agent: str | None = None
    """The name the engine believes it is talking to; another name is refused (409)."""
    phase_acks: bool = False
    """Wait at each install phase until the engine acknowledges it (``POST .../phases/{index}``)."""


class PhaseAck(BaseModel):
    """The body of ``POST /steps/{key}/phases/{index}``."""

    proceed: bool = True
    caller: str | None = None
    """The ``X-Step-Caller`` of the stream that reported the phase; another caller's is refused (409)."""


@dataclass(frozen=True)
class KeyRecord:
    """What the agent remembers of one idempotency key once its attempt ended."""

    step: Step
    package_sha256: str
    status: StepStatus
    version_after: str | None = None
    error: str | None = None


def _entry_json(entry: JournalEntry) -> dict[str, Any]:
    """One applied operation, as ``GET /journal`` lists it and a state file keeps it."""
    return {"step": entry.step.value, "key": entry.key, "package_version": entry.package_version,
            "options": entry.options.model_dump(mode="json")}


def _entry_of(entry: Any, agent: str) -> JournalEntry:
    """An entry of ``agent``'s state file; one saved before options were kept had the defaults."""
    return JournalEntry(agent=agent, step=Step(entry["step"]), key=str(entry["key"]),
                        package_version=str(entry["package_version"]),
                        options=UpgradeOptions.model_validate(entry.get("options", {})))


@dataclass(frozen=True)
class AgentMemory:
    """What a simulator persists: the agent's version, failover role, journal and finished keys."""

    name: str
    version: str
    active: bool
    journal: tuple[JournalEntry, ...] = ()
    keys: Mapping[str, KeyRecord] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": STATE_FORMAT, "name": self.name, "version": self.version, "active": self.active,
            "journal": [_entry_json(entry) for entry in self.journal],
            "keys": {key: {"step": r.step.value, "package_sha256": r.package_sha256, "status": r.status.value,
                           "version_after": r.version_after, "error": r.error}
                     for key, r in self.keys.items()},
        }

    @classmethod
    def from_json(cls, data: Any, source: str) -> AgentMemory:
        """Parse a state file; a key that was still running when it was written is dropped (unknown)."""
        try:
            if data.get("format") != STATE_FORMAT:
                raise ValueError(f"unsupported format {data.get('format')!r}")
            name = str(data["name"])
            journal = tuple(_entry_of(entry, name) for entry in data["journal"])
            keys = {str(key): KeyRecord(step=Step(r["step"]), package_sha256=str(r["package_sha256"]),
                                        status=StepStatus(r["status"]), version_after=r.get("version_after"),
                                        error=r.get("error"))
                    for key, r in data["keys"].items()}
            finished = {key: r for key, r in keys.items()
                        if r.status in (StepStatus.SUCCEEDED, StepStatus.FAILED)}
            return cls(name=name, version=str(data["version"]), active=bool(data["active"]),
                       journal=journal, keys=finished)
        except (AttributeError, KeyError, TypeError, ValueError) as error:
            raise InvalidInput(f"agent state file {source} is unreadable: {error!r}") from None


def load_memory(path: Path) -> AgentMemory | None:
    """The memory saved at ``path``, or None when there is no file yet."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise InvalidInput(f"agent state file {path} is not JSON: {error}") from None
    return AgentMemory.from_json(data, str(path))


def save_memory(path: Path, memory: AgentMemory) -> None:
    """Write ``memory`` to ``path`` atomically: a temporary file in the same folder, fsync, ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            json.dump(memory.to_json(), stream, indent=1)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


class _Refused(Exception):
    """A request the agent will not attempt at all (answered 409)."""


@dataclass
class _Gate:
    """An install waiting at phase ``index`` for its caller's acknowledgement, until ``deadline``."""

    index: int
    deadline: float
    answered: threading.Event = field(default_factory=threading.Event)
    proceed: bool = True


@dataclass(frozen=True)
class _Final:
    status_code: int
    body: dict[str, Any]


_Event: TypeAlias = _Final | dict[str, Any]
"""What reaches a request following an attempt: a phase line, then its final answer."""


@dataclass(eq=False)
class _Caller:
    """One request following an attempt; events reach its queue on the server's event loop."""

    acks: bool
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue[_Event] = field(default_factory=asyncio.Queue)
    id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def put(self, event: _Event) -> None:
        with contextlib.suppress(RuntimeError):  # the server's loop is closed: nobody reads it anymore
            self.loop.call_soon_threadsafe(self.events.put_nowait, event)


@dataclass(eq=False)
class _Attempt:
    """A running attempt of one key and the requests following it.

    ``caller`` gets the phases and is the one whose acknowledgements count (None: it went away and
    nobody picked the step up yet); ``watchers`` are earlier callers, waiting for the outcome only.
    """

    key: str
    request: StepRequest
    caller: _Caller | None
    watchers: list[_Caller] = field(default_factory=list)
    phase: dict[str, Any] | None = None
    """The last phase line, sent first to a caller that picks the step up."""
    gate: _Gate | None = None
    unacked: bool = False
    """The caller let a phase go unacknowledged past the timeout: do not wait for it again."""


class _ServedAgent:
    """One agent of a simulation behind the protocol, with the memory of its earlier runs."""

    def __init__(self, simulation: SimulatedAgentGateway, name: str, *, state_file: Path | None,
                 previous: AgentMemory | None, phase_ack_timeout: float, heartbeat_seconds: float) -> None:
        self.simulation = simulation
        self.name = name
        self.address = simulation.address_of(name)
        self.state_file = state_file
        self.phase_ack_timeout = phase_ack_timeout
        self.heartbeat_seconds = heartbeat_seconds
        self._previous_journal = previous.journal if previous else ()
        self._previous_keys = dict(previous.keys) if previous else {}
        self._records: dict[str, KeyRecord] = dict(self._previous_keys)
        self._attempts: dict[str, _Attempt] = {}
        self._lock = threading.Lock()
        self._save_lock = threading.Lock()

    # -- steps ---------------------------------------------------------------------------------

    def perform(self, key: str, request: StepRequest, on_phase: PhaseReporter) -> StepOutcome:
        if request.agent is not None and request.agent != self.name:
            raise _Refused(f"this is agent {self.name}, not {request.agent}")
        with self._lock:
            record = self._records.get(key)
            if record is not None and (record.step, record.package_sha256) != (request.step,
                                                                                request.package_sha256):
                raise _Refused(f"idempotency key {key!r} was used for {record.step.value} "
                               f"of package {record.package_sha256}")
            if record is not None and record.status is StepStatus.SUCCEEDED and key in self._previous_keys:
                return StepOutcome(version_after=record.version_after)  # applied before a restart
            created = record is None
            if created:
                self._records[key] = KeyRecord(request.step, request.package_sha256, StepStatus.RUNNING)
        package = PackageRef(sha256=request.package_sha256, version=request.package_version, options=request.options,
                             web_only=request.web_only)
        try:
            outcome = self.simulation.perform(self.address, request.step, key, package, on_phase)
        except AgentUnreachable:
            with self._lock:
                current = self._records.get(key)
                if created and current is not None and current.status is StepStatus.RUNNING:
                    del self._records[key]
            raise
        except AgentStepFailed as error:
            self._finish(key, KeyRecord(request.step, request.package_sha256, StepStatus.FAILED,
                                        error=error.reason))
            raise
        self._finish(key, KeyRecord(request.step, request.package_sha256, StepStatus.SUCCEEDED,
                                    version_after=outcome.version_after))
        return outcome

    def _finish(self, key: str, record: KeyRecord) -> None:
        with self._lock:
            self._records[key] = record
        self.save()

    def save(self) -> None:
        """Persist what the agent must remember (before it answers, so an answered outcome is durable)."""
        if self.state_file is None:
            return
        with self._save_lock:
            save_memory(self.state_file, self.memory())

    def memory(self) -> AgentMemory:
        snapshot = self.simulation.agent(self.name)
        with self._lock:
            keys = {k: r for k, r in self._records.items() if r.status is not StepStatus.RUNNING}
        return AgentMemory(name=self.name, version=snapshot.version, active=snapshot.active,
                           journal=self.journal(), keys=keys)

    def journal(self) -> tuple[JournalEntry, ...]:
        return self._previous_journal + tuple(self.simulation.journal_of(self.name))

    def record(self, key: str) -> KeyRecord | None:
        with self._lock:
            return self._records.get(key)

    def status(self, key: str) -> StepStatus:
        status = self.simulation.step_status(self.address, key)
        if status is StepStatus.UNKNOWN and key in self._previous_keys:
            return self._previous_keys[key].status
        return status

    # -- attempts and the requests following them --------------------------------------------

    def follow(self, key: str, request: StepRequest, caller: _Caller) -> _Attempt | _Final:
        """Make ``caller`` the caller of the running attempt of ``key``, or start one for it.

        Returns the attempt, or the final answer at once when the request is refused.
        """
        if request.agent is not None and request.agent != self.name:
            return _Final(409, {"status": "refused", "error": f"this is agent {self.name}, not {request.agent}"})
        with self._lock:
            attempt = self._attempts.get(key)
            if attempt is not None:
                if (attempt.request.step, attempt.request.package_sha256) != (request.step, request.package_sha256):
                    return _Final(409, {"status": "refused", "error": (
                        f"idempotency key {key!r} is running {attempt.request.step.value} "
                        f"of package {attempt.request.package_sha256}")})
                self._attach(attempt, caller)
                return attempt
            attempt = _Attempt(key, request, caller)
            self._attempts[key] = attempt
        threading.Thread(target=self._run, args=(attempt,), name=f"agent-{self.name}-{key}", daemon=True).start()
        return attempt

    def _attach(self, attempt: _Attempt, caller: _Caller) -> None:
        """``caller`` picks the running ``attempt`` up (the lock is held): the phase it is at, then the rest."""
        if attempt.caller is not None:
            attempt.watchers.append(attempt.caller)  # its acknowledgements no longer count
        attempt.caller = caller
        attempt.unacked = False
        if attempt.phase is not None:
            caller.put(attempt.phase)
        gate = attempt.gate
        if gate is not None:
            if caller.acks:
                gate.deadline = time.monotonic() + self.phase_ack_timeout  # the new caller's time to answer
            else:
                gate.answered.set()

    def leave(self, attempt: _Attempt, caller: _Caller) -> None:
        """``caller``'s request ended (answered, or its connection is gone). If it was the attempt's
        caller, the install stops waiting for it at once and goes on; a caller may pick it up later."""
        with self._lock:
            if attempt.caller is caller:
                attempt.caller = None
                if attempt.gate is not None:
                    attempt.gate.answered.set()
            elif caller in attempt.watchers:
                attempt.watchers.remove(caller)

    def acknowledge(self, key: str, index: int, ack: PhaseAck) -> _Final:
        with self._lock:
            attempt = self._attempts.get(key)
            gate = attempt.gate if attempt is not None else None
            if attempt is None or gate is None or gate.index != index:
                return _Final(404, {"error": f"no install of key {key!r} waits at phase {index}"})
            if ack.caller is not None and (attempt.caller is None or attempt.caller.id != ack.caller):
                return _Final(409, {"status": "refused",
                                    "error": f"another caller picked up the install of key {key!r}"})
            gate.proceed = ack.proceed
            gate.answered.set()
        return _Final(200, {"status": "acknowledged"})

    def _run(self, attempt: _Attempt) -> None:
        """Run ``attempt`` (in its own thread) and send its final answer to every request following it."""
        try:
            outcome = self.perform(attempt.key, attempt.request, self._reporter(attempt))
            final = _Final(200, {"status": "succeeded", "version_after": outcome.version_after})
        except _Refused as error:
            final = _Final(409, {"status": "refused", "error": str(error)})
        except AgentUnreachable as error:
            final = _Final(503, {"status": "unavailable", "error": error.reason})
        except AgentStepFailed as error:
            final = _Final(422, {"status": "failed", "error": error.reason})
        except Exception as error:  # a bug of the simulator: answered like any broken server
            final = _Final(500, {"status": "error", "error": repr(error)})
        with self._lock:
            if self._attempts.get(attempt.key) is attempt:
                del self._attempts[attempt.key]
            attempt.gate = None
            for caller in (attempt.caller, *attempt.watchers):
                if caller is not None:
                    caller.put(final)

    def _reporter(self, attempt: _Attempt) -> PhaseReporter:
        def on_phase(phase: str, index: int, count: int) -> None:
            line = {"phase": phase, "index": index, "count": count}
            with self._lock:
                attempt.phase = line
                caller = attempt.caller
                gate = None
                if caller is not None and caller.acks and not attempt.unacked:
                    gate = _Gate(index, time.monotonic() + self.phase_ack_timeout)
                attempt.gate = gate
                if caller is not None:
                    caller.put(line)
            if gate is None:
                return
            while not gate.answered.wait(max(0.0, gate.deadline - time.monotonic())):
                with self._lock:
                    if time.monotonic() >= gate.deadline:  # the caller went silent: go on without it
                        attempt.unacked = True
                        break
            with self._lock:
                if attempt.gate is gate:
                    attempt.gate = None
            if gate.answered.is_set() and not gate.proceed:
                raise AgentStepFailed(self.name, Step.INSTALL.value,
                                      f"the engine stopped the install at phase {phase}")

        return on_phase


class _StepStream(StreamingResponse):
    """The NDJSON stream of one request following an attempt: phase lines, keep-alives, the final line.

    Whatever ends it (the final line, or the client's connection going away) takes the request off the
    attempt at once, so the install never waits for the acknowledgement of a caller that is gone.
    """

    def __init__(self, served: _ServedAgent, attempt: _Attempt, caller: _Caller, first: _Event | None) -> None:
        super().__init__(self._lines(served.heartbeat_seconds, caller, first), media_type=NDJSON,
                         headers={CALLER_HEADER: caller.id})
        self._served = served
        self._attempt = attempt
        self._caller = caller

    @staticmethod
    async def _lines(heartbeat: float, caller: _Caller, first: _Event | None) -> AsyncIterator[bytes]:
        event = first
        while True:
            if event is None:
                yield b"\n"  # keep-alive: the client's read timeout spans one phase at most
            elif isinstance(event, _Final):
                yield _line(event.body)
                return
            else:
                yield _line(event)
            try:
                async with asyncio.timeout(heartbeat):
                    event = await caller.events.get()
            except TimeoutError:
                event = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        streaming = asyncio.ensure_future(self.stream_response(send))
        listening = asyncio.ensure_future(self.listen_for_disconnect(receive))
        try:
            await asyncio.wait((streaming, listening), return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._served.leave(self._attempt, self._caller)
            for task in (streaming, listening):
                task.cancel()
            for outcome in await asyncio.gather(streaming, listening, return_exceptions=True):
                if isinstance(outcome, Exception) and not isinstance(outcome, OSError):
                    raise outcome  # OSError: the client went away while a line was written


def _line(body: dict[str, Any]) -> bytes:
    return json.dumps(body).encode() + b"\n"


def agent_app(simulation: SimulatedAgentGateway, name: str, *, state_file: Path | None = None,
              previous: AgentMemory | None = None, phase_ack_timeout: float = 10.0,
              heartbeat_seconds: float = 1.0) -> FastAPI:
    """An ASGI app serving the agent ``name`` of ``simulation`` over the agent protocol.

    With ``state_file`` the agent's memory is written there after every finished attempt; ``previous``
    is what an earlier run saved (its keys and journal are answered from, its version and failover role
    must already be in ``simulation``).
    """
    served = _ServedAgent(simulation, name, state_file=state_file, previous=previous,
                          phase_ack_timeout=phase_ack_timeout, heartbeat_seconds=heartbeat_seconds)
    app = FastAPI(title=f"simulated DataMiner Agent {name}", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.served = served

    @app.post("/steps/{key}")
    async def post_step(key: str, request: StepRequest) -> Response:
        caller = _Caller(acks=request.phase_acks, loop=asyncio.get_running_loop())
        attempt = served.follow(key, request, caller)
        if isinstance(attempt, _Final):
            return JSONResponse(attempt.body, status_code=attempt.status_code)
        try:
            first: _Event | None
            try:
                async with asyncio.timeout(served.heartbeat_seconds):
                    first = await caller.events.get()
            except TimeoutError:
                first = None  # a slow step: stream, so that keep-alives reach the client
            if isinstance(first, _Final):
                served.leave(attempt, caller)
                return JSONResponse(first.body, status_code=first.status_code)
            return _StepStream(served, attempt, caller, first)
        except BaseException:
            served.leave(attempt, caller)
            raise

    @app.post("/steps/{key}/phases/{index}")
    def acknowledge(key: str, index: int, ack: PhaseAck) -> JSONResponse:
        answer = served.acknowledge(key, index, ack)
        return JSONResponse(answer.body, status_code=answer.status_code)

    @app.get("/steps/{key}")
    def get_step(key: str, agent: str | None = None) -> JSONResponse:
        if agent is not None and agent != name:
            return JSONResponse({"status": "refused", "error": f"this is agent {name}, not {agent}"},
                                status_code=409)
        try:
            status = served.status(key)
        except AgentUnreachable as error:
            return JSONResponse({"status": "unavailable", "error": error.reason}, status_code=503)
        body: dict[str, Any] = {"status": status.value}
        record = served.record(key)
        if record is not None and record.status is status:
            if status is StepStatus.SUCCEEDED:
                body["version_after"] = record.version_after
            elif status is StepStatus.FAILED:
                body["error"] = record.error
        return JSONResponse(body)

    @app.get("/identity")
    def identity() -> JSONResponse:
        try:
            found = simulation.identify(served.address.address)
        except AgentUnreachable as error:
            return JSONResponse({"status": "unavailable", "error": error.reason}, status_code=503)
        return JSONResponse({"name": found.name, "address": found.address, "cluster": found.cluster,
                             "version": found.version, "facts": found.facts.model_dump(mode="json")})

    @app.get("/journal")
    def journal() -> JSONResponse:
        return JSONResponse([_entry_json(entry) for entry in served.journal()])

    @app.get("/health")
    def health() -> JSONResponse:
        return JSONResponse({"status": "ok", "name": name})

    return app


def create_agent_app(spec: SimulatedAgent, state_file: Path, step_seconds: float | Mapping[Step, float] = 0.0,
                     fail: Mapping[Step, int] | None = None, *, phase_ack_timeout: float = 10.0) -> FastAPI:
    """The stand-alone simulator: ``spec`` served over HTTP, its memory kept in ``state_file``.

    At start the state file (if any) gives the version, failover role, journal and finished keys of the
    previous run; ``fail`` arms the first attempts of each step to fail (counted afresh at every start).
    """
    previous = load_memory(state_file)
    if previous is not None:
        if previous.name != spec.name:
            raise InvalidInput(f"agent state file {state_file} belongs to agent {previous.name!r}, "
                               f"not {spec.name!r}")
        spec = replace(spec, version=previous.version, active=previous.active)
    durations = step_seconds if isinstance(step_seconds, Mapping) else dict.fromkeys(Step, float(step_seconds))
    simulation = SimulatedAgentGateway([spec], sleeper=time.sleep, step_seconds=durations)
    for step, times in (fail or {}).items():
        simulation.fail(spec.name, step, times, reason=f"injected failure of {step.value}")
    app = agent_app(simulation, spec.name, state_file=state_file, previous=previous,
                    phase_ack_timeout=phase_ack_timeout)
    app.state.served.save()
    return app


def parse_fail(values: Iterable[str]) -> dict[Step, int]:
    """``STEP:TIMES`` options (``install:2``) as a mapping; ``InvalidInput`` names a bad one."""
    armed: dict[Step, int] = {}
    for value in values:
        step_text, _, times_text = value.partition(":")
        try:
            step = Step(step_text.strip())
            times = int(times_text) if times_text else 1
        except ValueError:
            raise InvalidInput(f"--fail {value!r}: expected STEP:TIMES with STEP one of "
                               f"{', '.join(s.value for s in Step)} and TIMES a whole number") from None
        if times < 0:
            raise InvalidInput(f"--fail {value!r}: TIMES must be zero or more")
        armed[step] = times
    return armed


# -- running agents in this process ---------------------------------------------------------------

class ThreadedServer:
    """uvicorn serving one app on a free port of ``host``, in a daemon thread of this process."""

    def __init__(self, app: Any, host: str = "127.0.0.1") -> None:
        # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets that say they are TCP.
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, 0))
        self.address = f"{host}:{self._socket.getsockname()[1]}"
        config = uvicorn.Config(app, log_level="warning", lifespan="off", timeout_graceful_shutdown=1)
        self._server = uvicorn.Server(config)  # not in the main thread: uvicorn installs no signal handlers
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._socket]},
                                        name=f"uvicorn-{self.address}", daemon=True)

    def start(self, timeout: float = 10.0) -> str:
        """Start serving; returns ``host:port`` once the server accepts connections."""
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the server on {self.address} did not start")
            time.sleep(0.005)
        return self.address

    def request_stop(self) -> None:
        self._server.should_exit = True

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving and wait for the thread (in-flight requests get one second to finish)."""
        self.request_stop()
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._socket.close()


@contextlib.contextmanager
def serve_in_thread(app: Any, host: str = "127.0.0.1") -> Iterator[str]:
    """Serve ``app`` on a free port of ``host`` for the duration of the block; yields ``host:port``."""
    server = ThreadedServer(app, host)
    try:
        yield server.start()
    finally:
        server.stop()


@contextlib.contextmanager
def serve_simulation(simulation: SimulatedAgentGateway, names: Iterable[str],
                     **options: Any) -> Iterator[dict[str, str]]:
    """Serve each named agent of ``simulation`` on its own loopback port (``agent_app`` ``options``).

    Yields the routes: each agent's own address (as ``SimulatedAgent.address`` says) to ``host:port``.
    """
    servers: dict[str, ThreadedServer] = {}
    try:
        for name in names:
            server = ThreadedServer(agent_app(simulation, name, **options))
            servers[simulation.address_of(name).address] = server
            server.start()
        yield {address: server.address for address, server in servers.items()}
    finally:
        for server in servers.values():
            server.request_stop()
        for server in servers.values():
            server.stop()


class LoopbackRoutes(httpx.BaseTransport):
    """An httpx transport that sends requests for an agent's address to where it is really served.

    Hosts without a route fail like an address where nothing listens (``httpx.ConnectError``).
    """

    def __init__(self, routes: Mapping[str, str], inner: httpx.BaseTransport | None = None) -> None:
        self._routes = dict(routes)
        self._inner = inner or httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        netloc = request.url.netloc.decode("ascii")
        target = self._routes.get(netloc) or self._routes.get(request.url.host)
        if target is None:
            raise httpx.ConnectError(f"no agent answers at {netloc}", request=request)
        host, _, port = target.rpartition(":")
        request.url = request.url.copy_with(host=host, port=int(port))
        return self._inner.handle_request(request)

    def close(self) -> None:
        self._inner.close()

