"""The model checker: the real decision core keeps every invariant in every reachable state of every
configuration, and each seeded fault is caught with a shortest trace."""

from __future__ import annotations

import pytest

from dma_upgrade.engine.model_check import (
    ALL_CONFIGURATIONS,
    SEEDED_FAULTS,
    Budgets,
    Configuration,
    Core,
    Explorer,
)
from dma_upgrade.engine.rollout_events import FailoverPolicy

CI_RUNS = {
    "all four agents at once": (Budgets(faults=0, crashes=0, operator=0), 4),
    "an engine crash": (Budgets(faults=0, crashes=1, operator=0), 2),
    "an operator command": (Budgets(faults=0, crashes=0, operator=1), 2),
    "an agent failure or silence": (Budgets(faults=1, crashes=0, operator=0), 2),
}
"""What CI explores: the budgets per run and ``--max-concurrent`` (2: the pair together, then the standalone
agents together; 4: all at once). About 160 s in all on this 2-core machine; ``dma-upgrade verify-model``
explores larger budgets on demand."""
EXPLORED = [(run, configuration) for run in CI_RUNS for configuration in ALL_CONFIGURATIONS
            if configuration.policy is not FailoverPolicy.DEFAULT or run == "all four agents at once"]
"""``default`` resolves to ``simultaneous`` before planning, so its model is simultaneous's: explored once."""


@pytest.mark.parametrize(("run", "configuration"), EXPLORED,
                         ids=[f"{run}/{c.name}".replace(" ", ",") for run, c in EXPLORED])
def test_the_real_core_keeps_every_invariant_in_every_reachable_state(run: str, configuration: Configuration) -> None:
    budgets, concurrent = CI_RUNS[run]
    verdict = Explorer(configuration, budgets, max_concurrent=concurrent).explore()
    assert verdict.holds, "\n".join(f"{v.invariant}: {v.detail}\n  " + "\n  ".join(v.trace)
                                    for v in verdict.violations)
    assert verdict.states > 100 and verdict.transitions > verdict.states  # it explored something


@pytest.mark.parametrize(("fault", "invariant"), [
    ("switch-before-start", "1 a switch-over moves activity only to an agent that runs the new version"),
    ("reboot-after-switch", "1 a switch-over moves activity only to an agent that runs the new version"),
    ("resume-without-asking", "5 each agent operation is applied once"),
    ("retry-after-timeout-without-asking", "5 each agent operation is applied once"),
])
def test_each_seeded_fault_is_caught_with_a_shortest_trace(fault: str, invariant: str) -> None:
    core, configuration = SEEDED_FAULTS[fault]
    verdict = Explorer(configuration, Budgets(faults=1, crashes=1, operator=0), core).explore()
    assert not verdict.holds
    violation = verdict.violations[0]
    assert violation.invariant == invariant
    assert violation.trace[0] == "the rollout is planned"
    assert any("StepStarted" in move for move in violation.trace)


def test_the_shortest_trace_of_a_switch_before_the_start_ends_with_that_switch_over() -> None:
    core, configuration = SEEDED_FAULTS["switch-before-start"]
    violation = Explorer(configuration, Budgets(0, 0, 0), core).explore().violations[0]
    assert "running=False" in violation.detail
    assert violation.trace[-1].startswith("dma-backup: switch_over sent")
    assert len(violation.trace) == 6  # planned, started, upload, stop_snmp, install, the switch-over


def test_a_crash_budget_is_what_makes_the_resume_fault_visible() -> None:
    core, configuration = SEEDED_FAULTS["resume-without-asking"]
    assert Explorer(configuration, Budgets(faults=0, crashes=0, operator=0), core).explore().holds
    assert not Explorer(configuration, Budgets(faults=0, crashes=1, operator=0), core).explore().holds


def test_under_switch_back_the_pair_is_checked_with_both_members_switching() -> None:
    explorer = Explorer(Configuration(FailoverPolicy.BACKUP_FIRST_SWITCH_BACK, reboot=True, auto_start=False),
                        Budgets(0, 0, 0), Core())
    plans = {agent.name: agent.plan for agent in explorer.plan.agents}
    assert plans["dma-backup"].switch_over and plans["dma-main"].switch_over
    assert plans["dma-backup"].awaits_manual_start
    assert explorer.explore().holds
