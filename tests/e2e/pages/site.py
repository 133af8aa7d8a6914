"""A running ``dma-upgrade serve`` for the page tests: five agents of one cluster (a main/backup failover pair
among them) and a cluster of two on mixed versions, a token per role, and the simulated agent gateway, each of
whose steps takes ``STEP_SECONDS``.

``serve`` runs as a subprocess on a free loopback port with a temporary data folder, on the data folder's SQLite
file or on the test PostgreSQL database; agents are registered through the API, tokens written to the token
file ``serve`` reads on every call.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from dma_upgrade.adapters.access.tokens import Role, TokenFile
from dma_upgrade.adapters.packages.archive import build_package
from dma_upgrade.engine.packages import PackageKind, PackageManifest
from dma_upgrade.engine.versions import parse_version
from tests.e2e.cli import run_cli
from tests.e2e.engine_cluster import BACKUP, CLUSTER, MAIN, NEW, OLD, PLAIN
from tests.e2e.pages.browser import WAIT_SECONDS
from tests.e2e.serve import serving

STEP_SECONDS = 1.0
"""Each agent step takes this long, so the pages show agents in flight between their one-second polls."""
AGENTS = (*PLAIN, MAIN, BACKUP)
"""The agents of ``CLUSTER``, which the rollouts upgrade."""
MIXED = "south"
"""A second cluster, whose two agents run different versions (a warning on the Agents page)."""
ACTORS = {Role.VIEWER: "vera-viewer", Role.OPERATOR: "otto-operator", Role.ADMIN: "ada-admin"}
"""The token name of each role: the actor its calls record."""


@dataclass
class Site:
    """A running ``dma-upgrade serve`` over five registered agents, with a token per role."""

    env: dict[str, str]
    url: str
    tokens: dict[Role, str]
    log: Path
    folder: Path
    database_url: str | None

    def page(self, path: str, role: Role) -> str:
        """The address of the page at ``/path`` with ``role``'s token in the fragment."""
        return f"{self.url}/{path}#token={self.tokens[role]}"

    def cli(self, *args: str) -> str:
        """``dma-upgrade ARGS`` on this site's database; its output (fails the test on a non-zero exit)."""
        result = run_cli(*args, env=self.env, database_url=self.database_url)
        assert result.returncode == 0, f"dma-upgrade {' '.join(args)}: {result.stdout}{result.stderr}"
        return result.stdout

    def api(self, method: str, path: str, role: Role, **options: Any) -> Any:
        """Call ``/api/v1/PATH`` as ``role``; the JSON answer (fails the test on an error)."""
        response = httpx.request(method, f"{self.url}/api/v1/{path}", timeout=WAIT_SECONDS,
                                 headers={"Authorization": f"Bearer {self.tokens[role]}"}, **options)
        assert response.is_success, f"{method} {path}: {response.status_code} {response.text}"
        return response.json()

    def build(self, version: str) -> Path:
        """Write a Full ``.dmupgrade`` package installing ``version`` into this site's folder."""
        manifest = PackageManifest.for_version(parse_version(version), PackageKind.FULL)
        return build_package(manifest, self.folder)


def _agents() -> list[dict[str, str]]:
    """Three plain agents and a main/backup pair, all on ``OLD`` in ``CLUSTER``; two agents in ``MIXED``."""
    plain = [{"name": name, "address": f"10.0.0.{n}"} for n, name in enumerate(PLAIN, start=11)]
    pair = [{"name": MAIN, "address": "10.0.0.21", "failover_partner": BACKUP, "failover_role": "main"},
            {"name": BACKUP, "address": "10.0.0.22", "failover_partner": MAIN, "failover_role": "backup"}]
    mixed = [{"name": "dma-s1", "address": "10.0.1.1", "version": OLD, "cluster": MIXED},
             {"name": "dma-s2", "address": "10.0.1.2", "version": NEW, "cluster": MIXED}]
    return [*({**agent, "version": OLD, "cluster": CLUSTER} for agent in (*plain, *pair)), *mixed]


@contextmanager
def running_site(folder: Path, database_url: str | None) -> Iterator[Site]:
    """``serve`` on ``database_url`` (None: the data folder's SQLite file) with the agents and tokens; stopped after."""
    env = {"DMA_UPGRADE_DATA_DIR": str(folder / "data"), "DMA_UPGRADE_ACTOR": "page-test",
           "DMA_UPGRADE_AGENT_GATEWAY": "simulated", "DMA_UPGRADE_SIMULATED_STEP_SECONDS": str(STEP_SECONDS)}
    token_file = TokenFile(folder / "data" / "api-tokens.json")
    tokens = {role: token_file.add(name, role) for role, name in ACTORS.items()}
    with serving(folder / "serve.log", "--poll-seconds", "0.2", "--host", "127.0.0.1", env=env,
                 database_url=database_url, timeout=WAIT_SECONDS) as serve:
        site = Site(env, serve.url, tokens, serve.log, folder, database_url)
        for agent in _agents():
            site.api("POST", "agents", Role.OPERATOR, json=agent)
        yield site
