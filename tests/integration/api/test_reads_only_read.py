"""Reads only read: a query, and the API's reads, answer from the read models as they are, say how far behind
they are, and write nothing (no checkpoint moves, nothing is appended); catching up is the runner's job."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import sqlalchemy as sa

from dma_upgrade.adapters.access.tokens import Role
from dma_upgrade.adapters.read.freshness import HEAD_HEADER, POSITION_HEADER
from dma_upgrade.adapters.read.history_queries import package_history, version_history
from dma_upgrade.adapters.read.progress_queries import current_progress
from dma_upgrade.adapters.sql.read_models import checkpoints
from dma_upgrade.engine.errors import NotFound
from tests.integration.api.harness import ApiHarness


def _checkpoints(api: ApiHarness) -> dict[str, int]:
    with api.container.engine.connect() as conn:
        return {row.name: row.position for row in conn.execute(sa.select(checkpoints))}


@pytest.fixture
def raw(api: ApiHarness) -> Iterator[httpx.Client]:
    """A viewer's client that does not stand in for serve's follower: nothing catches up before its reads."""
    with httpx.Client(base_url=api.server.url, timeout=30,
                      headers={"Authorization": f"Bearer {api.tokens[Role.VIEWER]}"}) as client:
        yield client


def test_a_query_on_a_read_model_behind_answers_as_it_is_with_its_lag_and_writes_nothing(api: ApiHarness) -> None:
    api.start_rollout()
    head, before = api.head(), _checkpoints(api)

    packages = package_history(api.container)
    progress = current_progress(api.container)
    with pytest.raises(NotFound, match="events behind the log"):
        version_history(api.container, "dma-1")

    assert packages.value == [] and progress.value == []
    assert packages.lag is not None and progress.lag is not None
    assert (packages.lag.position, packages.lag.head, packages.lag.events) == (0, head, head)
    assert (progress.lag.position, progress.lag.head) == (0, head)
    assert _checkpoints(api) == before
    assert api.head() == head


def test_after_the_runner_catches_up_the_same_query_shows_everything_and_no_lag(api: ApiHarness) -> None:
    api.start_rollout()
    api.container.projections.catch_up()

    packages, progress = package_history(api.container), current_progress(api.container)

    assert len(packages.value) == 1 and len(progress.value) == 1
    assert packages.lag is not None and packages.lag.events == 0 and packages.lag.note() is None
    assert progress.lag is not None and progress.lag.position == api.head()


def test_the_apis_reads_answer_the_stale_view_with_its_lag_in_headers_and_move_no_checkpoint(
        api: ApiHarness, raw: httpx.Client) -> None:
    rollout_id = api.start_rollout()["rollout_id"]
    head, before = api.head(), _checkpoints(api)

    history = raw.get("/api/v1/packages/history")
    progress = raw.get("/api/v1/progress")
    one = raw.get(f"/api/v1/progress/{rollout_id}")

    assert (history.status_code, history.json()) == (200, [])
    assert (progress.status_code, progress.json()) == (200, [])
    for answer in (history, progress):
        assert (answer.headers[POSITION_HEADER], answer.headers[HEAD_HEADER]) == ("0", str(head))
    assert one.status_code == 404 and "behind the log" in one.json()["detail"]
    assert _checkpoints(api) == before


def test_the_apis_reads_show_what_the_runner_caught_up(api: ApiHarness, raw: httpx.Client) -> None:
    rollout_id = api.start_rollout()["rollout_id"]
    api.container.projections.catch_up()
    head = str(api.head())

    one = raw.get(f"/api/v1/progress/{rollout_id}")
    agent = raw.get(f"/api/v1/progress/{rollout_id}/agents/dma-1")

    assert one.status_code == 200 and one.json()["rollout_id"] == rollout_id
    assert agent.status_code == 200 and agent.json()["agent"] == "dma-1"
    for answer in (one, agent):
        assert (answer.headers[POSITION_HEADER], answer.headers[HEAD_HEADER]) == (head, head)
