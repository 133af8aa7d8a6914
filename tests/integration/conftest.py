"""Harness fixtures shared by the integration tests (a module may override ``harness``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import FakeClock
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
