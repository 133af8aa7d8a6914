"""Metrics under test: a harness whose service appends through its metrics' store, and a rollout with failures."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from prometheus_client import generate_latest

from dma_upgrade.adapters.bootstrap import App, bootstrap
from dma_upgrade.adapters.metrics import Metrics
from dma_upgrade.adapters.settings import Settings
from dma_upgrade.engine.ports import Clock
from dma_upgrade.engine.rollout import RolloutState
from dma_upgrade.engine.upgrade_events import Step
from tests.exposition import Scrape
from tests.integration.rollout_harness import RolloutHarness

INSTALL_SECONDS = 600.0
"""How long an install takes on the fake clock (the harness's gateway sleeps by advancing it)."""
AGENTS = ("dma-1", "dma-2", "dma-3")


@dataclass
class Wired:
    """A harness wired with metrics (``metrics=True``): its app, and the metrics its service appends through."""

    harness: RolloutHarness
    container: App
    metrics: Metrics

    def scrape(self) -> Scrape:
        return Scrape(generate_latest(self.metrics.registry).decode())


def with_metrics(harness: RolloutHarness) -> Wired:
    """The harness (built with ``metrics=True``) with its app and metrics at hand."""
    assert harness.app.metrics is not None, "build the harness with metrics=True"
    return Wired(harness, harness.app, harness.app.metrics)


def serving_process(db_url: str, clock: Clock | None = None) -> tuple[App, Metrics]:
    """Open the database as another serving process would, its metrics on."""
    app = bootstrap(Settings(database_url=db_url), clock=clock, metrics=True)
    assert app.metrics is not None
    return app, app.metrics


def run_with_failures(w: Wired) -> UUID:
    """dma-1's first install fails (its retry succeeds); every upload to dma-2 fails, so its upgrade fails.

    Returns the id of the rollout, which ends failed."""
    w.harness.gateway.fail("dma-1", Step.INSTALL, times=1)
    w.harness.gateway.fail("dma-2", Step.UPLOAD, times=None)
    planned, rollout = w.harness.start_and_run(names=AGENTS, max_concurrent="1")
    assert rollout.state is RolloutState.FAILED
    return planned.rollout_id
