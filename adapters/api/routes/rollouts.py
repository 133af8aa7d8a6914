"""``/api/v1/rollouts``: planning, starting and controlling rollouts."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar
from uuid import UUID

from fastapi import APIRouter, HTTPException
from starlette.concurrency import run_in_threadpool

from dma_upgrade.adapters.access.tokens import Role
from dma_upgrade.adapters.api.context import ApiContext, Context, Operator, Viewer
from dma_upgrade.adapters.api.errors import ERROR_RESPONSES
from dma_upgrade.adapters.shapes.models import DoubtResolvedOut, PlanOut, ResolveIn, RolloutIn, RolloutStateOut
from dma_upgrade.engine.commands import CommandName, rollout_command

router = APIRouter(prefix="/api/v1/rollouts", tags=["rollouts"], responses=ERROR_RESPONSES)

T = TypeVar("T")


async def _on_thread(context: ApiContext, body: RolloutIn, work: Callable[[], T]) -> T:
    """Run ``work`` on a worker thread: within the cap on calls that wait on agents when ``body`` names agents by
    address (each unknown one is asked who it is), so 503 while that cap is full."""
    if body.addresses:
        return await context.agent_calls.run(work)
    return await run_in_threadpool(work)


@router.post("/plan")
async def plan(body: RolloutIn, context: Context, caller: Viewer) -> PlanOut:
    """The plan a rollout would follow (a dry run: nothing is recorded).

    Agents given by address are asked who they are, so that needs the operator role."""
    if body.addresses and caller.role < Role.OPERATOR:
        raise HTTPException(403, f"{caller.name} is a {caller.role.label}: planning with agents by address "
                                 f"contacts them, which needs the operator role")

    def planned() -> PlanOut:
        spec, notes = body.to_spec(context.app.clock.now())
        return PlanOut.of(context.service.plan(spec), started=False, notes=notes)

    return await _on_thread(context, body, planned)


@router.post("", status_code=201)
async def start(body: RolloutIn, context: Context, caller: Operator) -> PlanOut:
    """Plan and start a rollout, now or at ``start_at``; the serving engine drives it."""

    def started() -> PlanOut:
        spec, notes = body.to_spec(context.app.clock.now())
        return PlanOut.of(context.service.start_rollout(spec, actor=caller.name), started=True, notes=notes)

    return await _on_thread(context, body, started)


@router.get("/{rollout_id}")
def get_rollout(rollout_id: UUID, context: Context, _: Viewer) -> RolloutStateOut:
    """A rollout's state, folded from its stream."""
    return RolloutStateOut.of(context.service.rollout(rollout_id))


@router.post("/{rollout_id}/resolve")
def resolve(rollout_id: UUID, body: ResolveIn, context: Context, caller: Operator) -> DoubtResolvedOut:
    """Decide the step in doubt of an agent's upgrade (its outcome unknown to the engine): applied (recorded done;
    after an install the agent runs the rollout's version) or not applied (sent again under the same key).
    409 when no step of that upgrade is in doubt."""
    return DoubtResolvedOut.of(context.service.resolve_doubt(rollout_id, body.agent, body.applied, actor=caller.name))


@router.post("/{rollout_id}/{command}")
def control(rollout_id: UUID, command: CommandName, context: Context, caller: Operator) -> RolloutStateOut:
    """Pause (no new agent starts), resume, cancel (agents not yet installing), retry the failed agents, or continue
    a failed or cancelled rollout with its package (the agents that did not complete run again; 409 while it runs
    or when every agent completed)."""
    return RolloutStateOut.of(context.service.control(rollout_command(command, rollout_id), actor=caller.name))
