"""The API harness fixtures: a served API on each database backend, closed afterwards."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FakeClock
from tests.integration.api.harness import ApiHarness


@pytest.fixture
def make_api(db_url: str, clock: FakeClock, tmp_path: Path) -> Iterator[Callable[..., ApiHarness]]:
    """Serve the API on the test database with ``Settings`` overrides; every server stopped afterwards."""
    built: list[ApiHarness] = []

    def make(**settings: Any) -> ApiHarness:
        h = ApiHarness(db_url, clock, tmp_path, **settings)
        built.append(h)
        return h

    yield make
    for h in built:
        h.close()


@pytest.fixture
def api(make_api: Callable[..., ApiHarness]) -> ApiHarness:
    """The API with default settings, agents dma-1 and dma-2 registered and a package uploaded."""
    h = make_api()
    h.add_agents()
    h.upload_package()
    return h
