"""``dma-upgrade verify-model``: explore every interleaving of a small cluster and check the invariants."""

from __future__ import annotations

import time
from typing import Annotated

import typer
from rich.table import Table

from dma_upgrade.adapters.cli.context import out
from dma_upgrade.engine.model_check import ALL_CONFIGURATIONS, SEEDED_FAULTS, Budgets, Core, Explorer, Verdict

_FAULTS = ", ".join(SEEDED_FAULTS)


def verify_model(
    ctx: typer.Context,
    faults: Annotated[int, typer.Option(min=0, help="agent failures or silences per run")] = 1,
    crashes: Annotated[int, typer.Option(min=0, help="engine crashes per run")] = 0,
    operator: Annotated[int, typer.Option(min=0, help="operator commands per run (pause, cancel, "
                                                      "retry, resolve; resume and manual starts are free)")] = 0,
    max_concurrent: Annotated[int, typer.Option(min=1, max=4, help="agents upgraded at once (2: the pair, "
                                                                   "then the standalone agents)")] = 2,
    seed_fault: Annotated[str | None, typer.Option(
        help=f"check a deliberately broken core instead, to see the checker bite: {_FAULTS}")] = None,
) -> None:
    """Check the safety invariants (docs/invariants.md) in every reachable state of a failover pair plus two
    standalone agents, for each failover policy, reboot on/off and auto start on/off; exit 1 on a violation,
    printing the shortest trace that leads to it. Each budget multiplies the states (one fault: about two
    minutes here; a fault, a crash and an operator command together: tens of minutes)."""
    budgets = Budgets(faults=faults, crashes=crashes, operator=operator)
    if seed_fault is None:
        runs = [(configuration, Core()) for configuration in ALL_CONFIGURATIONS]
    elif seed_fault in SEEDED_FAULTS:
        core, configuration = SEEDED_FAULTS[seed_fault]
        runs = [(configuration, core)]
        budgets = Budgets(faults=max(faults, 1), crashes=max(crashes, 1), operator=operator)  # room for it to bite
    else:
        out.print(f"unknown seeded fault {seed_fault!r}; known: {_FAULTS}", markup=False)
        raise typer.Exit(2)
    table = Table("configuration", "states", "transitions", "seconds", "verdict",
                  title=f"budgets per run: {budgets.faults} faults, {budgets.crashes} crashes, "
                        f"{budgets.operator} operator commands; "
                        f"{max_concurrent} agents at once")
    broken: list[Verdict] = []
    for configuration, core in runs:
        began = time.monotonic()
        verdict = Explorer(configuration, budgets, core, max_concurrent=max_concurrent).explore()
        table.add_row(configuration.name, str(verdict.states), str(verdict.transitions),
                      f"{time.monotonic() - began:.1f}", "holds" if verdict.holds else "VIOLATED")
        if not verdict.holds:
            broken.append(verdict)
    out.print(table)
    for verdict in broken:
        for violation in verdict.violations:
            out.print(f"\n{verdict.configuration.name}: invariant {violation.invariant} is broken: "
                      f"{violation.detail}\nshortest trace ({len(violation.trace)} moves):", markup=False)
            for number, move in enumerate(violation.trace, start=1):
                out.print(f"  {number:3}. {move}", markup=False)
    if broken:
        raise typer.Exit(1)
