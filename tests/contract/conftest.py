"""Fixtures of the contract tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from dma_upgrade.adapters.sql.database import create_db_engine


@pytest.fixture
def engine(postgres_url: str) -> Iterator[sa.Engine]:
    """An engine on the run's PostgreSQL database (emptied for this test), disposed after it."""
    engine = create_db_engine(postgres_url)
    yield engine
    engine.dispose()
