"""``progress --follow`` off a terminal: a line per change, each printed once."""

from __future__ import annotations

from uuid import uuid4

import pytest

from dma_upgrade.adapters.cli.progress_cmd import _print_changes
from dma_upgrade.adapters.clock import short_id
from dma_upgrade.adapters.shapes.models import RolloutProgressOut
from dma_upgrade.engine.rollout_events import RolloutStarted, rollout_stream_id
from dma_upgrade.engine.upgrade_events import Step, StepStarted
from dma_upgrade.projections.progress import AGENTS, ROLLOUTS, ProgressProjection
from dma_upgrade.projections.tables import MemoryRows
from tests.unit.test_projections_history_inventory_timers import Feed, planned, run, scheduled_upgrade, table


def _view(rows: MemoryRows) -> RolloutProgressOut:
    [rollout] = table(rows, ROLLOUTS.name)
    return RolloutProgressOut.of(rollout, table(rows, AGENTS.name))


def test_each_line_prints_when_it_first_shows_and_again_only_once_it_changed(
        capsys: pytest.CaptureFixture[str]) -> None:
    feed, rollout_id = Feed(), uuid4()
    plan = planned(rollout_id)
    agent = plan.agents[0]
    stream = f"upgrade-{agent.upgrade_id}"
    rows = run(ProgressProjection(), [
        feed(rollout_stream_id(rollout_id), plan),
        feed(stream, scheduled_upgrade(plan))])
    waiting = _view(rows)
    run(ProgressProjection(), [feed(rollout_stream_id(rollout_id), RolloutStarted()),
                               feed(stream, StepStarted(step=Step.UPLOAD, attempt=1, idempotency_key="k1"))], rows)
    uploading = _view(rows)

    _print_changes([[waiting], [waiting], [uploading], [uploading]])

    short = short_id(str(rollout_id))
    assert capsys.readouterr().out.splitlines() == [
        f"rollout {rollout_id}: Planned · 0 completed · 0 failed · 0 in flight · 1 waiting · 0 cancelled",
        f"rollout {short} agent dma-1: Scheduled 0% · waiting",
        f"rollout {rollout_id}: Running · 0 completed · 0 failed · 1 in flight · 0 waiting · 0 cancelled",
        f"rollout {short} agent dma-1: Scheduled 0% · upload (attempt 1)",
    ]
