"""A simulated cluster of DataMiner Agents behind the ``AgentGateway`` port.

A test double shipped with the code (as httpx ships ``MockTransport``): the demo, the engine's tests
and the gateway contract suite drive it exactly like real agents. Each simulated agent keeps its
version, its running services, whether it is the active agent of a failover pair, the packages it
holds, the idempotency keys it has seen and a journal of every operation it applied.

Time is not real here: a step "takes" ``step_seconds[step]`` by calling the injected sleeper (a no-op
by default, ``time.sleep`` in the demo), so tests never wait.

Faults are injected deterministically and counted per agent:

- ``fail(name, step, times)``: the next ``times`` attempts of ``step`` that reach the agent fail
  (``AgentStepFailed``) and are not applied;
- ``break_during_install(name, phase, times)``: the next installs report the phases up to and
  including ``phase``, then fail, leaving the version unchanged;
- ``unreachable(name, times)``: the next ``times`` calls of any kind to the agent (``perform``,
  ``step_status``, ``identify``) raise ``AgentUnreachable``; ``times=None`` means until ``heal``;
- ``report_version(name, version, times)``: the next installs succeed but leave the agent on
  ``version`` instead of the package's version.

A call answered from the agent's memory of a key (already succeeded) consumes no ``fail`` or
``break_during_install`` count; only attempts the agent starts do.

What the steps do to an agent: upload adds the package to the ones it holds; stop SNMP stops the
Windows SNMP service; install stops the DMA (at the Disable phase) and, once every phase passed,
sets the new version, leaving the DMA stopped; switch over toggles which agent of a failover pair is
active; reboot leaves the DMA stopped; start starts the DMA.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from dma_upgrade.engine.errors import AgentStepFailed, AgentUnreachable, InvalidInput
from dma_upgrade.engine.packages import INSTALL_PHASES, AgentFacts
from dma_upgrade.engine.ports import AgentAddress, AgentIdentity, PackageRef, PhaseReporter, StepOutcome, StepStatus
from dma_upgrade.engine.upgrade_events import Step, UpgradeOptions
from dma_upgrade.engine.versions import parse_version

Sleeper = Callable[[float], None]
"""Lets simulated time pass: called with a number of seconds (``time.sleep`` in the demo)."""

DEFAULT_VERSION = "10.4.0.0-14112"
"""The version a ``SimulatedAgent`` runs when none is given."""


def no_sleep(seconds: float) -> None:
    """The default sleeper: simulated time passes instantly."""


def modern_facts(version: str = DEFAULT_VERSION) -> AgentFacts:
    """The facts of a well-kept modern agent: every prerequisite of a recent package passes."""
    return AgentFacts(version=version, os="Windows Server 2022",
                      components=frozenset({"dotnet-8", "aspnetcore-8"}), database="opensearch",
                      nats_running=True, ports_reachable=True)


@dataclass(frozen=True)
class SimulatedAgent:
    """The specification of one simulated agent as it stands when the gateway is built.

    ``facts`` defaults to ``modern_facts``; the agent always reports its current version in them,
    whatever ``facts.version`` says. ``partner`` names the other agent of a failover pair (naming it
    on one side is enough); ``active`` is False for the passive (backup) agent of a pair.
    """

    name: str
    address: str
    cluster: str | None = None
    version: str = DEFAULT_VERSION
    facts: AgentFacts | None = None
    active: bool = True
    partner: str | None = None


@dataclass(frozen=True)
class JournalEntry:
    """One operation an agent applied, in the order it applied them."""

    agent: str
    step: Step
    key: str
    package_version: str
    options: UpgradeOptions = field(default_factory=UpgradeOptions)
    """The upgrade's options the step came with (an install with ``extract_all`` off replaces only changed files)."""


@dataclass(frozen=True)
class SimulatedAgentState:
    """A snapshot of one simulated agent."""

    name: str
    address: str
    cluster: str | None
    version: str
    facts: AgentFacts
    dma_running: bool
    snmp_running: bool
    active: bool
    partner: str | None
    uploaded: frozenset[str]
    reboots: int
    journal: tuple[JournalEntry, ...]


@dataclass
class _KeyRecord:
    step: Step
    package_sha256: str
    status: StepStatus
    outcome: StepOutcome | None = None
    error: str | None = None


@dataclass
class _Countdown:
    """An armed fault: how many more times it fires (None: until healed) and its parameters."""

    remaining: int | None
    reason: str = ""
    value: str = ""

    def fire(self) -> bool:
        """Consume one firing; False once the count is spent."""
        if self.remaining is None:
            return True
        if self.remaining <= 0:
            return False
        self.remaining -= 1
        return True


def _countdown(times: int | None, reason: str = "", value: str = "") -> _Countdown:
    if times is not None and times < 0:
        raise InvalidInput(f"times must be zero or more (or None for always); got {times}")
    return _Countdown(times, reason, value)


@dataclass
class _Agent:
    name: str
    address: str
    cluster: str | None
    version: str
    facts: AgentFacts
    active: bool
    partner: str | None = None
    dma_running: bool = True
    snmp_running: bool = True
    uploaded: set[str] = field(default_factory=set)
    reboots: int = 0
    journal: list[JournalEntry] = field(default_factory=list)
    keys: dict[str, _KeyRecord] = field(default_factory=dict)
    failures: dict[Step, _Countdown] = field(default_factory=dict)
    install_break: _Countdown | None = None
    wrong_version: _Countdown | None = None
    down: _Countdown | None = None
    state: threading.Condition = field(default_factory=threading.Condition)
    """Guards every field above; held only briefly, never while a step takes its time."""
    busy: threading.Lock = field(default_factory=threading.Lock)
    """Held while a step runs: an agent applies one step at a time."""

    def current_facts(self) -> AgentFacts:
        return self.facts.model_copy(update={"version": self.version})


class SimulatedAgentGateway:
    """An ``AgentGateway`` over simulated agents; thread-safe, one lock per agent."""

    def __init__(self, agents: Iterable[SimulatedAgent], *, sleeper: Sleeper = no_sleep,
                 step_seconds: Mapping[Step, float] | None = None,
                 discover: Callable[[str], SimulatedAgent | None] | None = None) -> None:
        """``discover`` names the agent registered at an address not simulated yet (None: nobody answers),
        so a long-running engine also simulates agents added after it started."""
        self._sleeper = sleeper
        self._step_seconds = {step: float((step_seconds or {}).get(step, 0.0)) for step in Step}
        if any(seconds < 0 for seconds in self._step_seconds.values()):
            raise InvalidInput("step durations must be zero or more seconds")
        self._agents: dict[str, _Agent] = {}
        self._by_address: dict[str, _Agent] = {}
        self._discover = discover
        self._registry_lock = threading.Lock()
        specs = list(agents)
        for spec in specs:
            self._register(spec)
        self._pair(specs)
        self._journal: list[JournalEntry] = []
        self._journal_lock = threading.Lock()

    def _register(self, spec: SimulatedAgent) -> _Agent:
        parse_version(spec.version)
        if spec.name in self._agents:
            raise InvalidInput(f"two simulated agents are named {spec.name!r}")
        if spec.address in self._by_address:
            raise InvalidInput(f"two simulated agents have the address {spec.address!r}")
        agent = _Agent(name=spec.name, address=spec.address, cluster=spec.cluster, version=spec.version,
                       facts=spec.facts or modern_facts(spec.version), active=spec.active)
        self._agents[spec.name] = agent
        self._by_address[spec.address] = agent
        return agent

    def _pair(self, specs: Iterable[SimulatedAgent]) -> None:
        for spec in specs:
            if spec.partner is None:
                continue
            if spec.partner not in self._agents or spec.partner == spec.name:
                raise InvalidInput(f"agent {spec.name!r}: unknown failover partner {spec.partner!r}")
            one, other = self._agents[spec.name], self._agents[spec.partner]
            if one.partner not in (None, other.name) or other.partner not in (None, one.name):
                raise InvalidInput(f"agent {spec.name!r} is in two failover pairs")
            one.partner, other.partner = other.name, one.name

    # -- the port ------------------------------------------------------------------------------

    def perform(self, agent: AgentAddress, step: Step, idempotency_key: str, package: PackageRef,
                on_phase: PhaseReporter | None = None) -> StepOutcome:
        """Perform ``step`` once for ``idempotency_key``; see ``AgentGateway.perform``.

        A key that already succeeded returns its first outcome; a key another thread is performing
        is waited for and shares that attempt's result; a key whose attempt failed may be performed
        again (it was not applied).
        """
        target = self._resolve(agent, step.value)
        with target.state:
            self._answer_or_raise(target, step.value)
            record = target.keys.get(idempotency_key)
            if record is not None and (record.step != step or record.package_sha256 != package.sha256):
                raise AgentStepFailed(target.name, step.value,
                                      f"idempotency key {idempotency_key!r} was used for "
                                      f"{record.step.value} of package {record.package_sha256}")
            if record is not None and record.status is StepStatus.RUNNING:
                joined = record
                while joined.status is StepStatus.RUNNING:
                    target.state.wait()
                if joined.status is StepStatus.FAILED:
                    raise AgentStepFailed(target.name, step.value, joined.error or "the attempt failed")
            if record is not None and record.status is StepStatus.SUCCEEDED:
                assert record.outcome is not None
                return record.outcome
            record = _KeyRecord(step=step, package_sha256=package.sha256, status=StepStatus.RUNNING)
            target.keys[idempotency_key] = record
        with target.busy:
            try:
                outcome = self._apply(target, step, idempotency_key, package, on_phase)
            except BaseException as error:
                # An error of the caller's ``on_phase`` aborts the attempt too; it propagates as is.
                with target.state:
                    record.status = StepStatus.FAILED
                    record.error = error.reason if isinstance(error, AgentStepFailed) else repr(error)
                    target.state.notify_all()
                raise
        return outcome

    def step_status(self, agent: AgentAddress, idempotency_key: str) -> StepStatus:
        """What the agent knows of ``idempotency_key``; ``AgentUnreachable`` if it does not answer."""
        target = self._resolve(agent, "step_status")
        with target.state:
            self._answer_or_raise(target, "step_status")
            record = target.keys.get(idempotency_key)
            return StepStatus.UNKNOWN if record is None else record.status

    def identify(self, address: str) -> AgentIdentity:
        """Who answers at ``address``; ``AgentUnreachable`` for an unknown or unreachable address."""
        target = self._by_address.get(address)
        if target is None:
            raise AgentUnreachable(address, "identify", f"no agent answers at {address}")
        with target.state:
            self._answer_or_raise(target, "identify")
            return AgentIdentity(name=target.name, address=target.address, cluster=target.cluster,
                                 version=target.version, facts=target.current_facts())

    # -- fault injection -----------------------------------------------------------------------

    def fail(self, agent_name: str, step: Step, times: int | None = 1,
             reason: str = "injected failure") -> None:
        """The next ``times`` attempts of ``step`` on the agent fail without being applied."""
        target = self._named(agent_name)
        with target.state:
            target.failures[step] = _countdown(times, reason)

    def break_during_install(self, agent_name: str, phase: str = "Upgrade database", times: int | None = 1,
                             reason: str | None = None) -> None:
        """The next ``times`` installs report the phases up to ``phase`` included, then fail."""
        if phase not in INSTALL_PHASES:
            raise InvalidInput(f"unknown install phase {phase!r}; "
                               f"expected one of {', '.join(INSTALL_PHASES)}")
        target = self._named(agent_name)
        with target.state:
            target.install_break = _countdown(times, reason or f"the installer broke during {phase}", phase)

    def unreachable(self, agent_name: str, times: int | None = None) -> None:
        """The next ``times`` calls to the agent (of any kind) get no answer; None: until healed."""
        target = self._named(agent_name)
        with target.state:
            target.down = _countdown(times, "the agent did not answer")

    def report_version(self, agent_name: str, version: str, times: int | None = 1) -> None:
        """The next ``times`` installs succeed but leave the agent on ``version``."""
        parse_version(version)
        target = self._named(agent_name)
        with target.state:
            target.wrong_version = _countdown(times, value=version)

    def heal(self, agent_name: str) -> None:
        """Disarm every fault injected into the agent."""
        target = self._named(agent_name)
        with target.state:
            target.failures.clear()
            target.install_break = target.wrong_version = target.down = None

    def add(self, spec: SimulatedAgent) -> None:
        """Start simulating one more agent (one that answers but is not registered yet, say)."""
        with self._registry_lock:
            self._register(spec)

    # -- inspection ----------------------------------------------------------------------------

    def agent(self, name: str) -> SimulatedAgentState:
        """A snapshot of the agent named ``name`` (``KeyError`` if there is none)."""
        target = self._named(name)
        with target.state:
            return SimulatedAgentState(
                name=target.name, address=target.address, cluster=target.cluster, version=target.version,
                facts=target.current_facts(), dma_running=target.dma_running,
                snmp_running=target.snmp_running, active=target.active, partner=target.partner,
                uploaded=frozenset(target.uploaded), reboots=target.reboots, journal=tuple(target.journal))

    def address_of(self, name: str) -> AgentAddress:
        """How to reach the agent named ``name``."""
        target = self._named(name)
        return AgentAddress(name=target.name, address=target.address)

    def journal(self) -> list[tuple[str, Step]]:
        """Every applied operation across agents, in the order applied: (agent name, step)."""
        with self._journal_lock:
            return [(entry.agent, entry.step) for entry in self._journal]

    def journal_of(self, name: str) -> list[JournalEntry]:
        """The operations the agent named ``name`` applied, in order."""
        target = self._named(name)
        with target.state:
            return list(target.journal)

    # -- internals -----------------------------------------------------------------------------

    def _named(self, name: str) -> _Agent:
        try:
            return self._agents[name]
        except KeyError:
            raise KeyError(f"no simulated agent is named {name!r}") from None

    def _resolve(self, agent: AgentAddress, operation: str) -> _Agent:
        target = self._by_address.get(agent.address) or self._discovered(agent.address)
        if target is None:
            raise AgentUnreachable(agent.name, operation, f"no agent answers at {agent.address}")
        if target.name != agent.name:
            raise AgentStepFailed(agent.name, operation,
                                  f"the agent at {agent.address} is {target.name}, not {agent.name}")
        return target

    def _discovered(self, address: str) -> _Agent | None:
        """Start simulating the agent ``discover`` names at ``address``, if any."""
        spec = self._discover(address) if self._discover is not None else None
        if spec is None:
            return None
        with self._registry_lock:
            return self._by_address.get(address) or self._register(spec)

    @staticmethod
    def _answer_or_raise(target: _Agent, operation: str) -> None:
        """Raise ``AgentUnreachable`` if the agent is down for this call (the caller holds its state)."""
        if target.down is not None and target.down.fire():
            raise AgentUnreachable(target.name, operation, target.down.reason)

    def _apply(self, target: _Agent, step: Step, key: str, package: PackageRef,
               on_phase: PhaseReporter | None) -> StepOutcome:
        """Run one attempt the agent accepted (holding ``target.busy``); raise to fail it."""
        with target.state:
            failure = target.failures.get(step)
            if failure is not None and failure.fire():
                raise AgentStepFailed(target.name, step.value, failure.reason)
        if step is Step.INSTALL:
            return self._install(target, key, package, on_phase)
        self._sleep(self._step_seconds[step])
        if step is Step.SWITCH_OVER and target.partner is not None:
            with target.state:
                becomes_active = not target.active
            partner = self._agents[target.partner]
            with partner.state:
                partner.active = not becomes_active
        with target.state:
            match step:
                case Step.UPLOAD:
                    target.uploaded.add(package.sha256)
                case Step.STOP_SNMP:
                    target.snmp_running = False
                case Step.SWITCH_OVER:
                    target.active = not target.active
                case Step.REBOOT:
                    target.dma_running = False
                    target.reboots += 1
                case Step.START:
                    target.dma_running = True
            self._record(target, step, key, package)
            outcome = StepOutcome()
            self._succeed(target, key, outcome)
        return outcome

    def _install(self, target: _Agent, key: str, package: PackageRef,
                 on_phase: PhaseReporter | None) -> StepOutcome:
        with target.state:
            breaking = target.install_break if target.install_break and target.install_break.fire() else None
        per_phase = self._step_seconds[Step.INSTALL] / len(INSTALL_PHASES)
        for index, phase in enumerate(INSTALL_PHASES):
            if on_phase is not None:
                on_phase(phase, index, len(INSTALL_PHASES))
            if phase == "Disable" and not package.web_only:
                with target.state:
                    target.dma_running = False
            if breaking is not None and phase == breaking.value:
                raise AgentStepFailed(target.name, Step.INSTALL.value, breaking.reason)
            self._sleep(per_phase)
        with target.state:
            wrong = target.wrong_version
            if package.web_only:  # the web components only: DataMiner runs on, on its version
                version = target.version
            else:
                version = wrong.value if wrong is not None and wrong.fire() else package.version
                target.version = version
                target.dma_running = False
            self._record(target, Step.INSTALL, key, package)
            outcome = StepOutcome(version_after=version)
            self._succeed(target, key, outcome)
        return outcome

    def _record(self, target: _Agent, step: Step, key: str, package: PackageRef) -> None:
        entry = JournalEntry(agent=target.name, step=step, key=key, package_version=package.version,
                             options=package.options)
        target.journal.append(entry)
        with self._journal_lock:
            self._journal.append(entry)

    @staticmethod
    def _succeed(target: _Agent, key: str, outcome: StepOutcome) -> None:
        record = target.keys[key]
        record.status, record.outcome = StepStatus.SUCCEEDED, outcome
        target.state.notify_all()

    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._sleeper(seconds)
