"""The model checker's operator continues failed and cancelled rollouts, and every invariant still holds."""

from __future__ import annotations

from collections import Counter

from dma_upgrade.engine.model_check import Budgets, Configuration, Explorer
from dma_upgrade.engine.rollout_events import FailoverPolicy

CONTINUES = "operator: continues the rollout"


class _Counting(Explorer):
    """The explorer, counting the operator's moves by label."""

    moves_seen: Counter[str]

    def _operator(self, state):  # type: ignore[no-untyped-def]
        for label, after, good in super()._operator(state):
            self.moves_seen[label] += 1
            yield label, after, good


def test_a_cancelled_then_continued_backup_first_pair_keeps_every_invariant() -> None:
    """Two operator commands: a cancel at any moment, then a continue (a failed rollout needs two faults with a
    retry budget of 1, too many states for CI; ``verify-model --faults 2 --operator 1`` explores it)."""
    explorer = _Counting(Configuration(FailoverPolicy.BACKUP_FIRST, reboot=False, auto_start=True),
                         Budgets(faults=0, crashes=0, operator=2), max_concurrent=2)
    explorer.moves_seen = Counter()

    verdict = explorer.explore()

    assert verdict.holds, [(v.invariant, v.detail, v.trace) for v in verdict.violations]
    assert explorer.moves_seen[CONTINUES] > 0  # continue was explored, not only reachable in principle
