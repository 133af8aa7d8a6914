"""Things said once: rollout commands as types, a rollout's state after each event, rollout stream ids, the check of a
failover policy, and the one-line messages of an invalid value."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal, get_args
from uuid import uuid4

import pydantic
import pytest

from dma_upgrade.engine.commands import COMMANDS, CommandName, ContinueRollout, RetryFailedAgents, rollout_command
from dma_upgrade.engine.errors import InvalidInput, InvalidTransition, describe_validation, shown
from dma_upgrade.engine.events import Event
from dma_upgrade.engine.rollout import STATE_AFTER, Rollout, RolloutState
from dma_upgrade.engine.rollout_events import (
    CLAIMS_STREAM,
    ROLLOUT_STREAMS,
    FailedAgentsRetried,
    FailoverPolicy,
    RolloutCancelled,
    RolloutCompleted,
    RolloutContinued,
    RolloutFailed,
    RolloutPaused,
    RolloutResumed,
    RolloutStarted,
    rollout_id_of_stream,
    rollout_stream_id,
)
from dma_upgrade.projections.progress import ROLLOUTS, ProgressProjection
from tests.unit.test_projections_history_inventory_timers import Feed, planned, run, table

ROOT = Path(__file__).resolve().parents[2]


# -- commands -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", get_args(CommandName))
def test_each_command_name_reads_back_as_its_command_type(name: str) -> None:
    rollout_id = uuid4()
    command = rollout_command(name, rollout_id)
    assert type(command) is COMMANDS[name]
    assert (command.name, command.rollout_id) == (name, rollout_id)


def test_the_commands_are_the_five_controls_spelled_as_in_urls_and_on_the_command_line() -> None:
    assert tuple(COMMANDS) == ("pause", "resume", "cancel", "retry-failed", "continue") == get_args(CommandName)
    assert COMMANDS["retry-failed"] is RetryFailedAgents and COMMANDS["continue"] is ContinueRollout


def test_an_unknown_command_name_is_invalid_input_and_quoted_short() -> None:
    with pytest.raises(InvalidInput, match=r"^unknown rollout command 'restart'; use pause\|resume\|cancel"):
        rollout_command("restart", uuid4())
    with pytest.raises(InvalidInput) as refused:
        rollout_command("x\n" * 500, uuid4())
    assert "\n" not in str(refused.value) and len(str(refused.value)) < 150


def test_a_command_is_a_value() -> None:
    rollout_id = uuid4()
    assert rollout_command("pause", rollout_id) == rollout_command("pause", rollout_id)
    assert rollout_command("pause", rollout_id) != rollout_command("resume", rollout_id)
    with pytest.raises(AttributeError):
        rollout_command("cancel", rollout_id).rollout_id = uuid4()  # type: ignore[misc]


# -- a rollout's state after each event ---------------------------------------------------------------------------

SAMPLES: list[Event] = [RolloutStarted(), RolloutPaused(), RolloutResumed(), RolloutCancelled(reason="x"),
                        RolloutCompleted(completed=1, cancelled=0), RolloutFailed(reason="x"),
                        FailedAgentsRetried(agents=("dma-1",)), RolloutContinued(agents=("dma-1",))]


@pytest.mark.parametrize("event", SAMPLES, ids=lambda e: type(e).__name__)
def test_each_rollout_event_leads_the_aggregate_to_one_state_from_every_state_it_may_leave(event: Event) -> None:
    assert {type(e) for e in SAMPLES} == set(STATE_AFTER)
    left = []
    for state in RolloutState:
        rollout = Rollout()
        rollout.state = state
        try:
            rollout.apply(event)
        except InvalidTransition:
            continue
        left.append(state)
        assert rollout.state is STATE_AFTER[type(event)]
    assert left, "some state allows it"


@pytest.mark.parametrize("events", [
    [RolloutStarted()],
    [RolloutStarted(), RolloutPaused()],
    [RolloutStarted(), RolloutPaused(), RolloutResumed(), RolloutCompleted(completed=1, cancelled=0)],
    [RolloutStarted(), RolloutFailed(reason="x"), FailedAgentsRetried(agents=("dma-1",))],
    [RolloutStarted(), RolloutFailed(reason="x"), RolloutCancelled(reason="y")],
    [RolloutCancelled(reason="y"), RolloutContinued(agents=("dma-1",))],
])
def test_the_progress_projection_shows_the_state_the_aggregate_folds_to(events: list[Event]) -> None:
    feed, rollout_id = Feed(), uuid4()
    plan = planned(rollout_id)
    stream = rollout_stream_id(rollout_id)
    rows = run(ProgressProjection(), [feed(stream, plan), *(feed(stream, event) for event in events)])
    folded = Rollout.fold([plan, *events])
    assert table(rows, ROLLOUTS.name)[0]["state"] == folded.state.value


# -- stream ids ---------------------------------------------------------------------------------------------------

def test_a_rollout_stream_id_reads_back_as_its_rollout_id() -> None:
    rollout_id = uuid4()
    assert rollout_id_of_stream(rollout_stream_id(rollout_id)) == str(rollout_id)
    assert CLAIMS_STREAM.startswith(ROLLOUT_STREAMS)


def test_the_product_spells_the_rollout_stream_prefix_in_one_place() -> None:
    spelled = [path.relative_to(ROOT).as_posix() for folder in ("engine", "projections", "adapters")
               for path in (ROOT / folder).rglob("*.py") if re.search(r"""["']rollout-["{]""", path.read_text())]
    assert spelled == ["engine/rollout_events.py"]


# -- the failover policy ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("policy", list(FailoverPolicy))
def test_every_policy_parses_by_its_name(policy: FailoverPolicy) -> None:
    assert FailoverPolicy.parse(policy.value) is policy


def test_an_unknown_policy_or_default_where_a_policy_must_be_named_is_invalid_input() -> None:
    with pytest.raises(InvalidInput, match=r"^unknown failover policy 'sideways'; use default\|simultaneous\|"):
        FailoverPolicy.parse("sideways")
    with pytest.raises(InvalidInput, match="must name a policy, not 'default'"):
        FailoverPolicy.parse("default", allow_default=False)
    assert FailoverPolicy.parse("backup-first", allow_default=False) is FailoverPolicy.BACKUP_FIRST


# -- messages -----------------------------------------------------------------------------------------------------

def test_shown_quotes_cuts_and_escapes() -> None:
    assert shown("dma-1") == "'dma-1'"
    assert shown("a" * 41) == repr("a" * 40 + "…")
    assert shown("a" * 60, 60) == repr("a" * 60)
    assert shown("line\nbreak") == "'line\\nbreak'"


class _Option(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    max_concurrent: int = pydantic.Field(ge=1)
    kind: Literal["Full", "Web"] = "Full"

    @pydantic.field_validator("kind")
    @classmethod
    def _no_web(cls, value: str) -> str:
        if value == "Web":
            raise ValueError("no web here")
        return value


def _invalid(**fields: object) -> pydantic.ValidationError:
    with pytest.raises(pydantic.ValidationError) as caught:
        _Option.model_validate(fields)
    return caught.value


def test_a_validation_error_is_one_line_naming_each_field_and_not_the_input() -> None:
    error = _invalid(max_concurrent="s3cret", kind="Web")
    message = describe_validation(error)
    assert message == ("field 'max_concurrent': Input should be a valid integer, unable to parse string as an integer; "
                       "field 'kind': no web here")
    assert "s3cret" not in message
    assert describe_validation(error.errors()) == message  # FastAPI hands over the list


def test_a_validation_error_names_ten_fields_and_counts_the_rest() -> None:
    fields = {f"field_{n}": n for n in range(25)}
    message = describe_validation(_invalid(max_concurrent=1, **fields))
    assert message.count("field '") == 10 and message.endswith("; and 15 more")


def test_a_problem_of_the_whole_value_and_hostile_field_names_stay_short() -> None:
    with pytest.raises(pydantic.ValidationError) as whole:
        _Option.model_validate([])
    assert describe_validation(whole.value) == "Input should be a valid dictionary or instance of _Option"
    hostile = describe_validation([{"loc": ("body", "x" * 5000 + "\n"), "msg": "Extra inputs are not permitted"}])
    assert "\n" not in hostile and len(hostile) < 150
    assert describe_validation([]) == "the input is not valid"
    assert describe_validation([{"loc": "body", "msg": "odd"}, {"what": "no msg"}]) == "field 'body': odd; invalid"
