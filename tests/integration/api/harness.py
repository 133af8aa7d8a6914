"""A harness for API tests: ``create_app`` served by ``ApiServer`` on a real port, on a bootstrap-wired app.

``ApiHarness`` wires the process through ``bootstrap`` with its fakes: a fake clock, and a
``SimulatedAgentGateway`` that knows the agents of ``FLEET``, registered or not (unless the settings choose
the HTTP gateway). It creates one token per role in a real token file and serves the API on loopback (with
``metrics``, ``/metrics`` counts what the service appends, as in ``serve``). ``client(role)`` is an httpx
client carrying that role's token; the harness drives rollouts with a runner whose waits advance the fake
clock, as the serving engine would.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
from prometheus_client import CollectorRegistry

from dma_upgrade.adapters.access.tokens import Role, TokenFile
from dma_upgrade.adapters.agents.simulated_gateway import SimulatedAgent, SimulatedAgentGateway
from dma_upgrade.adapters.api.app import create_app
from dma_upgrade.adapters.api.context import ApiContext
from dma_upgrade.adapters.api.server import ApiServer
from dma_upgrade.adapters.bootstrap import bootstrap
from dma_upgrade.adapters.packages.archive import build_package
from dma_upgrade.adapters.settings import Settings
from dma_upgrade.engine.events import StoredRecord
from dma_upgrade.engine.packages import PackageKind, PackageManifest
from dma_upgrade.engine.rollout import Rollout
from dma_upgrade.engine.versions import parse_version
from tests.conftest import FakeClock
from tests.integration.rollout_harness import PACKAGE_VERSION, START_VERSION, FakeWaiter

CLUSTER = "north"
FLEET = [SimulatedAgent(name=f"dma-{i}", address=f"10.0.0.{i}", cluster=CLUSTER, version=START_VERSION)
         for i in range(1, 4)]
"""The simulated agents: ``dma-1`` and ``dma-2`` get registered, ``dma-3`` waits to be added by address."""
UNREGISTERED = FLEET[2]

ACTORS = {Role.VIEWER: "vera-viewer", Role.OPERATOR: "otto-operator", Role.ADMIN: "ada-admin"}
"""The token name of each role: the actor its calls record."""


class ApiHarness:
    """A served API on one database, a token per role, and the simulated agents behind it."""

    def __init__(self, db_url: str, clock: FakeClock, tmp_path: Path, *, metrics: bool = False,
                 **settings: Any) -> None:
        self.clock = clock
        self.tmp_path = tmp_path
        self.settings = Settings(database_url=db_url, data_dir=tmp_path / "data",
                                 api_tokens_file=tmp_path / "api-tokens.json", **settings)
        self.gateway = SimulatedAgentGateway(FLEET)
        simulated = self.settings.agent_gateway == "simulated"  # else the HTTP gateway the settings configure
        self.container = bootstrap(self.settings, clock=clock, gateway=self.gateway if simulated else None,
                                   metrics=metrics)
        self.service = self.container.service
        self.token_file = TokenFile(self.settings.resolved_tokens_file)
        self.tokens = {role: self.token_file.add(name, role) for role, name in ACTORS.items()}
        registry = self.container.metrics.registry if self.container.metrics is not None else CollectorRegistry()
        self.app = create_app(ApiContext(self.container, self.token_file), registry)
        self.server = ApiServer(self.app)
        self.server.start()
        self._clients: dict[Role | None, httpx.Client] = {}
        self._extra: list[httpx.Client] = []

    def client(self, role: Role | None = Role.ADMIN) -> httpx.Client:
        """A client with ``role``'s token (none when ``role`` is None), one per role."""
        if role not in self._clients:
            headers = {"Authorization": f"Bearer {self.tokens[role]}"} if role is not None else {}
            self._clients[role] = httpx.Client(base_url=self.server.url, headers=headers, timeout=30,
                                               event_hooks={"request": [self._follow]})
        return self._clients[role]

    def anonymous(self, authorization: str) -> httpx.Client:
        """A fresh client sending ``authorization`` as its Authorization header."""
        client = httpx.Client(base_url=self.server.url, headers={"Authorization": authorization}, timeout=30,
                              event_hooks={"request": [self._follow]})
        self._extra.append(client)
        return client

    def _follow(self, request: httpx.Request) -> None:
        """What ``serve``'s projection follower would have done by the time a client reads a read model (the API's
        reads only read): catch the projections up. Other requests leave them as they are (readiness sees lag)."""
        if request.url.path.startswith("/api/v1/progress") or request.url.path.endswith("/history"):
            self.container.projections.catch_up()

    def head(self) -> int:
        return self.container.store.head_position()

    def records(self, after: int = 0) -> Iterator[StoredRecord]:
        return (r for r in self.container.store.read_records() if r.position > after)

    # -- setup through the API -------------------------------------------------------------------

    def add_agents(self, *agents: SimulatedAgent) -> None:
        """Register ``agents`` (default: every agent of ``FLEET`` but ``UNREGISTERED``) as the operator."""
        operator = self.client(Role.OPERATOR)
        for agent in agents or [a for a in FLEET if a is not UNREGISTERED]:
            response = operator.post("/api/v1/agents", json={"name": agent.name, "address": agent.address,
                                                              "version": agent.version, "cluster": agent.cluster})
            assert response.status_code == 201, response.text

    def build(self, version: str = PACKAGE_VERSION) -> Path:
        """A real ``.dmupgrade`` file of ``version``."""
        manifest = PackageManifest.for_version(parse_version(version), PackageKind.FULL)
        return build_package(manifest, self.tmp_path / "built" / version)

    def upload(self, path: Path, role: Role = Role.OPERATOR) -> httpx.Response:
        with path.open("rb") as stream:
            return self.client(role).post("/api/v1/packages",
                                          files={"file": (path.name, stream, "application/octet-stream")})

    def upload_package(self, version: str = PACKAGE_VERSION) -> dict[str, Any]:
        response = self.upload(self.build(version))
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    def start_rollout(self, role: Role = Role.OPERATOR, **body: Any) -> dict[str, Any]:
        """Start a rollout of the uploaded package on the cluster (or as ``body`` says)."""
        request = {"package": self.service.packages()[-1].sha256, "cluster": CLUSTER, **body}
        response = self.client(role).post("/api/v1/rollouts", json=request)
        assert response.status_code == 201, response.text
        started: dict[str, Any] = response.json()
        return started

    # -- the engine's part -------------------------------------------------------------------------

    def run(self, rollout_id: str | UUID, on_wait: Callable[[float], None] | None = None) -> Rollout:
        """Drive the rollout as the serving engine would, waits advancing the fake clock."""
        waiter = FakeWaiter(self.clock)
        waiter.on_wait = on_wait
        return self.container.runner(waiter=waiter, poll_seconds=0.05).run(UUID(str(rollout_id)))

    def close(self) -> None:
        for client in [*self._clients.values(), *self._extra]:
            client.close()
        self.server.stop()
        self.container.close()
