"""Read-model rows written as plain SQL are stored exactly as SQLAlchemy would have stored them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy.dialects import sqlite
from sqlalchemy.dialects.sqlite import DATETIME

from dma_upgrade.adapters.sql.read_models import sqlite_time


@pytest.mark.parametrize("value", [
    datetime(2025, 1, 6, 8, 0, 2, 128585, tzinfo=UTC), datetime(2025, 1, 6, 8, tzinfo=UTC),
    datetime(999, 1, 1, tzinfo=UTC), datetime(2025, 1, 6, 8, 0, 0, 5, tzinfo=timezone(timedelta(hours=2))),
])
def test_a_timestamp_is_sqlite_text_as_sqlalchemy_binds_it(value: datetime) -> None:
    bind = DATETIME().bind_processor(sqlite.dialect())
    assert bind is not None
    assert sqlite_time(value) == bind(value)
