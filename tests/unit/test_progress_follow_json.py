"""``progress --follow --output json``: JSON lines, a rollout's document each time it changes, printed once."""

from __future__ import annotations

import json
from uuid import uuid4

import pytest

from dma_upgrade.adapters.cli.progress_cmd import _print_json_changes
from dma_upgrade.adapters.shapes.models import RolloutProgressOut
from dma_upgrade.engine.rollout_events import RolloutStarted, rollout_stream_id
from dma_upgrade.engine.upgrade_events import Step, StepStarted
from dma_upgrade.projections.progress import ProgressProjection
from tests.unit.test_progress_follow import _view
from tests.unit.test_projections_history_inventory_timers import Feed, planned, run, scheduled_upgrade


def test_each_rollout_prints_as_one_line_of_its_shape_when_it_first_shows_and_once_it_changed(
        capsys: pytest.CaptureFixture[str]) -> None:
    feed, rollout_id = Feed(), uuid4()
    plan = planned(rollout_id)
    stream = f"upgrade-{plan.agents[0].upgrade_id}"
    rows = run(ProgressProjection(), [feed(rollout_stream_id(rollout_id), plan), feed(stream, scheduled_upgrade(plan))])
    waiting = _view(rows)
    run(ProgressProjection(), [feed(rollout_stream_id(rollout_id), RolloutStarted()),
                               feed(stream, StepStarted(step=Step.UPLOAD, attempt=1, idempotency_key="k1"))], rows)
    uploading = _view(rows)

    _print_json_changes([[waiting], [waiting], [uploading], [uploading]])

    lines = capsys.readouterr().out.splitlines()
    assert [RolloutProgressOut.model_validate(json.loads(line)) for line in lines] == [waiting, uploading]
    assert [json.loads(line)["state"] for line in lines] == ["Planned", "Running"]
