"""A rollout harness whose service appends through ``instrument(container).store``, and a rollout with failures."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from prometheus_client import generate_latest

from dma_upgrade.adapters.bootstrap import Container, bootstrap
from dma_upgrade.adapters.clock import UuidFactory
from dma_upgrade.adapters.metrics import Metrics, instrument
from dma_upgrade.adapters.settings import Settings
from dma_upgrade.engine.rollout import RolloutState
from dma_upgrade.engine.service import UpgradeService
from dma_upgrade.engine.upgrade_events import Step
from tests.conftest import FakeClock
from tests.exposition import Scrape
from tests.integration.rollout_harness import RolloutHarness

INSTALL_SECONDS = 600.0
"""How long an install takes on the fake clock (the harness's gateway sleeps by advancing it)."""
AGENTS = ("dma-1", "dma-2", "dma-3")


@dataclass
class Wired:
    """A harness whose service appends through ``metrics.store``, and the container the metrics read."""

    harness: RolloutHarness
    container: Container
    metrics: Metrics

    def scrape(self) -> Scrape:
        return Scrape(generate_latest(self.metrics.registry).decode())


def wire(harness: RolloutHarness, db_url: str, clock: FakeClock) -> tuple[Container, Metrics]:
    """Open the database as a process would, instrument it, and put the harness's service on the metrics store."""
    container = bootstrap(Settings(database_url=db_url), clock=clock)
    metrics = instrument(container)
    harness.service = UpgradeService(metrics.store, clock, UuidFactory(), harness.gateway)
    return container, metrics


def run_with_failures(w: Wired) -> UUID:
    """dma-1's first install fails (its retry succeeds); every upload to dma-2 fails, so its upgrade fails.

    Returns the id of the rollout, which ends failed."""
    w.harness.gateway.fail("dma-1", Step.INSTALL, times=1)
    w.harness.gateway.fail("dma-2", Step.UPLOAD, times=None)
    planned, rollout = w.harness.start_and_run(names=AGENTS, max_concurrent="1")
    assert rollout.state is RolloutState.FAILED
    return planned.rollout_id
