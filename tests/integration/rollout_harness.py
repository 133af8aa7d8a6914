"""A small harness for rollout tests: a real SQL event store, a fake clock and simulated agents.

``RolloutHarness`` wires, through ``bootstrap`` on one database URL, everything a rollout needs, passing in
its fakes: a ``SimulatedAgentGateway`` with a cluster ``north`` of plain agents plus a main/backup
failover pair (registered in the inventory with their roles and facts) and a waiter that advances the
fake clock instead of sleeping; it uploads a package built as a real ``.dmupgrade`` file.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

from dma_upgrade.adapters.agents.simulated_gateway import SimulatedAgent, SimulatedAgentGateway, modern_facts, no_sleep
from dma_upgrade.adapters.bootstrap import bootstrap
from dma_upgrade.adapters.packages.archive import build_package, inspect_package
from dma_upgrade.adapters.runtime.rollout_runner import RolloutRunner
from dma_upgrade.adapters.settings import Settings
from dma_upgrade.engine.agent_events import FailoverRole
from dma_upgrade.engine.agent_upgrade import AgentUpgrade, upgrade_stream_id
from dma_upgrade.engine.events import RecordedEvent
from dma_upgrade.engine.packages import AgentFacts, PackageKind, PackageManifest, PrerequisiteCheck
from dma_upgrade.engine.records import PackageRecord
from dma_upgrade.engine.rollout import Rollout
from dma_upgrade.engine.rollout_events import FailoverPolicy, RolloutPlanned
from dma_upgrade.engine.service import AgentSelection, RolloutSpec
from dma_upgrade.engine.upgrade_events import AgentUpgradeScheduled, Step
from dma_upgrade.engine.upgrade_machine import UpgradeState
from dma_upgrade.engine.versions import parse_version
from tests.conftest import FakeClock

ACTOR = "alice"
CLUSTER = "north"
MAIN = "dma-main"
BACKUP = "dma-backup"
PAIR = (MAIN, BACKUP)
START_VERSION = "10.4.0.0-14112"
PACKAGE_VERSION = "10.4.9.0-14794"


class FakeWaiter:
    """A ``Waiter`` that never sleeps: each wait advances the fake clock by that many seconds.

    ``waits`` lists every wait in the order asked; ``on_wait`` (if set) is called after each one,
    outside the lock, so a test can act while the runner waits (e.g. resume a paused rollout).
    """

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.waits: list[float] = []
        self.on_wait: Callable[[float], None] | None = None
        self._lock = threading.Lock()

    def wait(self, seconds: float) -> None:
        with self._lock:
            self.clock.advance(seconds)
            self.waits.append(seconds)
        if self.on_wait is not None:
            self.on_wait(seconds)


@dataclass(frozen=True)
class AgentSpec:
    """One simulated agent to register: its name, address, cluster, version and optional facts."""

    name: str
    address: str
    cluster: str | None = CLUSTER
    version: str = START_VERSION
    facts: AgentFacts | None = None


class RolloutHarness:
    """The app on one database URL with simulated agents, an uploaded package, and runners.

    ``metrics`` counts what the service appends (``app.metrics``), as ``serve`` does."""

    def __init__(self, db_url: str, clock: FakeClock, tmp_path: Path, *, plain_agents: int = 2,
                 extra_agents: Iterable[AgentSpec] = (), facts: Mapping[str, AgentFacts] | None = None,
                 step_seconds: Mapping[Step, float] | None = None,
                 sleeper: Callable[[float], None] | None = None, upload: bool = True, metrics: bool = False) -> None:
        self.clock = clock
        self.tmp_path = tmp_path
        self.waiter = FakeWaiter(clock)
        self.plain = [f"dma-{i}" for i in range(1, plain_agents + 1)]
        specs = [AgentSpec(name, f"10.0.0.{i}") for i, name in enumerate(self.plain, start=1)]
        specs += [AgentSpec(MAIN, "10.0.0.100"), AgentSpec(BACKUP, "10.0.0.101"), *extra_agents]
        facts = dict(facts or {})
        simulated = [SimulatedAgent(name=s.name, address=s.address, cluster=s.cluster, version=s.version,
                                    facts=facts.get(s.name, s.facts) or modern_facts(s.version),
                                    active=s.name != BACKUP, partner=BACKUP if s.name == MAIN else None)
                     for s in specs]
        self.gateway = SimulatedAgentGateway(simulated, sleeper=sleeper or no_sleep, step_seconds=step_seconds)
        self.app = bootstrap(Settings(database_url=db_url, data_dir=tmp_path / "data"), clock=clock, pool_size=10,
                             gateway=self.gateway, waiter=self.waiter, metrics=metrics)
        self.engine = self.app.engine
        self.store = self.app.store
        self.service = self.app.service
        for s, sim in zip(specs, simulated, strict=True):
            role = {MAIN: FailoverRole.MAIN, BACKUP: FailoverRole.BACKUP}.get(s.name)
            partner = {MAIN: BACKUP, BACKUP: MAIN}.get(s.name)
            self.service.register_agent(name=s.name, address=s.address, version=s.version, cluster=s.cluster,
                                        failover_partner=partner, failover_role=role, facts=sim.facts,
                                        actor=ACTOR)
        self.package: PackageRecord | None = self.upload() if upload else None

    # -- setup ---------------------------------------------------------------------------------

    def upload(self, version: str = PACKAGE_VERSION,
               prerequisites: tuple[PrerequisiteCheck, ...] = ()) -> PackageRecord:
        """Build the package of ``version`` as a real file, inspect it and record the upload."""
        path = self.build(version, prerequisites)
        inspected = inspect_package(path)
        return self.service.record_upload(sha256=inspected.sha256, file_name=path.name, size=inspected.size,
                                          manifest=inspected.manifest, actor=ACTOR)

    def build(self, version: str = PACKAGE_VERSION,
              prerequisites: tuple[PrerequisiteCheck, ...] = ()) -> Path:
        manifest = PackageManifest.for_version(parse_version(version), PackageKind.FULL,
                                               prerequisites=prerequisites)
        return build_package(manifest, self.tmp_path / "packages" / version)

    def spec(self, *, package: PackageRecord | None = None, cluster: str | None = CLUSTER,
             names: tuple[str, ...] = (), **options: object) -> RolloutSpec:
        """A rollout of the harness package (or ``package``) on the cluster, or on ``names``."""
        chosen = package or self.package
        assert chosen is not None, "no package uploaded"
        selection = AgentSelection(names=names) if names else AgentSelection(cluster=cluster)
        if isinstance(policy := options.get("failover_policy"), str):  # as an operator types it
            options["failover_policy"] = FailoverPolicy.parse(policy)
        return RolloutSpec(package=chosen.sha256, selection=selection, **options)  # type: ignore[arg-type]

    def start(self, **spec: object) -> RolloutPlanned:
        """Plan and record a rollout (see ``spec``) without running it."""
        return self.service.start_rollout(self.spec(**spec), actor=ACTOR)  # type: ignore[arg-type]

    def runner(self) -> RolloutRunner:
        return self.app.runner(poll_seconds=0.05)

    def run(self, rollout_id: UUID) -> Rollout:
        """Drive the rollout until it completes, is cancelled or fails."""
        return self.runner().run(rollout_id)

    def start_and_run(self, **spec: object) -> tuple[RolloutPlanned, Rollout]:
        planned = self.start(**spec)
        return planned, self.run(planned.rollout_id)

    def close(self) -> None:
        self.app.close()

    # -- inspection ----------------------------------------------------------------------------

    def head(self) -> int:
        return self.store.head_position()

    def upgrade_id(self, planned: RolloutPlanned, agent: str) -> UUID:
        return next(a.upgrade_id for a in planned.agents if a.name == agent)

    def upgrade(self, planned: RolloutPlanned, agent: str) -> AgentUpgrade:
        return self.service.upgrade(self.upgrade_id(planned, agent))

    def upgrade_events(self, planned: RolloutPlanned, agent: str) -> list[RecordedEvent]:
        return self.store.read_stream(upgrade_stream_id(self.upgrade_id(planned, agent)))

    def states_visited(self, planned: RolloutPlanned, agent: str) -> list[UpgradeState]:
        """Every state the agent's upgrade passed through, folding its stream one event at a time."""
        upgrade = AgentUpgrade()
        visited: list[UpgradeState] = []
        for recorded in self.upgrade_events(planned, agent):
            upgrade.apply(recorded.event)
            if not visited or visited[-1] is not upgrade.state:
                visited.append(upgrade.state)
        return visited

    def journal_of(self, *agents: str) -> list[tuple[str, Step]]:
        """The gateway's journal, only the operations of ``agents``, in the order applied."""
        return [(name, step) for name, step in self.gateway.journal() if name in agents]

    def steps_of(self, agent: str) -> list[Step]:
        return [step for name, step in self.gateway.journal() if name == agent]

    def agent_by_upgrade_stream(self) -> dict[str, str]:
        """Upgrade stream id -> agent name, for every scheduled upgrade."""
        return {r.stream_id: r.event.agent for r in self.store.read_category("upgrade-")
                if isinstance(r.event, AgentUpgradeScheduled)}
