"""Same-version upgrades and downgrades: refused unless the operator chose them (``--reinstall``,
``--allow-downgrade``), and then noted on the plan.

A Full package installs DataMiner: installing the version an agent runs reinstalls it, an older one downgrades
it. A Web package leaves the agent's DataMiner version as it is, so neither rule applies to it; nor to an
upload-only rollout, which installs nothing. Versions are compared parsed (``engine.versions``), so notation
does not matter.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from dma_upgrade.engine.errors import InvalidInput
from dma_upgrade.engine.inventory import AgentRecord
from dma_upgrade.engine.versions import DataMinerVersion, parse_version


@dataclass(frozen=True)
class VersionChoice:
    """What the operator allowed: installing the version an agent runs, and installing an older one."""

    reinstall: bool = False
    allow_downgrade: bool = False


def judge_versions(agents: Iterable[AgentRecord], target: DataMinerVersion,
                   choice: VersionChoice) -> dict[str, str]:
    """Per agent that the package would reinstall or downgrade, a warning saying so (the operator chose it).

    Raises ``InvalidInput``, naming every such agent in one line, when the choice does not permit them all."""
    refusals: list[str] = []
    warnings: dict[str, str] = {}
    for agent in agents:
        current = parse_version(agent.version)
        if current == target:
            if not choice.reinstall:
                refusals.append(f"agent {agent.name} runs {agent.version} already (pass --reinstall to install "
                                f"the same version again)")
            warnings[agent.name] = f"agent {agent.name}: reinstalls {target}, the version it runs (--reinstall)"
        elif target < current:
            if not choice.allow_downgrade:
                refusals.append(f"agent {agent.name}: {target} is a downgrade from {agent.version} (pass "
                                f"--allow-downgrade to install the older version)")
            warnings[agent.name] = f"agent {agent.name}: {target} is a downgrade from {agent.version} " \
                                   f"(--allow-downgrade)"
    if refusals:
        raise InvalidInput("; ".join(refusals))
    return warnings
