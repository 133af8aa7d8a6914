"""Harness fixtures shared by the integration tests (a module may override ``harness``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dma_upgrade.engine.upgrade_events import Step
from tests.conftest import FakeClock
from tests.integration.metrics_harness import INSTALL_SECONDS, Wired, with_metrics
from tests.integration.rollout_harness import RolloutHarness


@pytest.fixture
def make_harness(db_url: str, clock: FakeClock, tmp_path: Path) -> Iterator[Callable[..., RolloutHarness]]:
    """Build harnesses with options (extra agents, step durations, a sleeper); all closed afterwards."""
    built: list[RolloutHarness] = []

    def make(**options: object) -> RolloutHarness:
        h = RolloutHarness(db_url, clock, tmp_path, **options)  # type: ignore[arg-type]
        built.append(h)
        return h

    yield make
    for h in built:
        h.close()


@pytest.fixture
def harness(make_harness: Callable[..., RolloutHarness]) -> RolloutHarness:
    """The default harness: two plain agents and a main/backup pair in cluster north, a package uploaded."""
    return make_harness()


@pytest.fixture
def wired(make_harness: Callable[..., RolloutHarness], clock: FakeClock) -> Wired:
    """Three plain agents (and the failover pair) whose installs take ten minutes of the fake clock; the
    service appends through an instrumented store."""
    return with_metrics(make_harness(plain_agents=3, step_seconds={Step.INSTALL: INSTALL_SECONDS},
                                     sleeper=clock.advance, metrics=True))
