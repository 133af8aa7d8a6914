"""An operator's controls of a rollout, as commands: one type each, carried out by ``UpgradeService.control``.

Each command is spelled in URLs (``POST /api/v1/rollouts/{id}/{name}``) and on the command line
(``dma-upgrade upgrade {name} ID``) by its ``name``; ``rollout_command`` reads that spelling back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal, get_args
from uuid import UUID

from dma_upgrade.engine.errors import InvalidInput, shown


@dataclass(frozen=True)
class RolloutControl:
    """An operator's control of one rollout: each subclass is one command, spelled ``name``."""

    rollout_id: UUID
    name: ClassVar[str]


class PauseRollout(RolloutControl):
    """No new agent starts; agents in flight finish."""

    name = "pause"


class ResumeRollout(RolloutControl):
    """A paused rollout goes on."""

    name = "resume"


class CancelRollout(RolloutControl):
    """Agents not yet installing are cancelled; those installing finish."""

    name = "cancel"


class RetryFailedAgents(RolloutControl):
    """The failed agents of a failed rollout run again."""

    name = "retry-failed"


class ContinueRollout(RolloutControl):
    """A failed or cancelled rollout is finished with its package: the agents that did not complete run again."""

    name = "continue"


RolloutCommand = PauseRollout | ResumeRollout | CancelRollout | RetryFailedAgents | ContinueRollout
"""Every control of a rollout (the dispatcher checks it handles each)."""

CommandName = Literal["pause", "resume", "cancel", "retry-failed", "continue"]
"""The spelling of each command (the API's path parameter)."""

COMMANDS: dict[str, type[RolloutCommand]] = {command.name: command for command in get_args(RolloutCommand)}
"""Each command type by its name."""

def rollout_command(name: str, rollout_id: UUID) -> RolloutCommand:
    """The command spelled ``name`` for one rollout; ``InvalidInput`` for another name."""
    command = COMMANDS.get(name)
    if command is None:
        raise InvalidInput(f"unknown rollout command {shown(name)}; use {'|'.join(COMMANDS)}")
    return command(rollout_id)
