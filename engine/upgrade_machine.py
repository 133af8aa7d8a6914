"""The agent-upgrade state machine: one transitions table, shared by every upgrade.

The table is data: the engine checks commands against it, folds events through it, and the CLI
draws it (``dma-upgrade states --mermaid``). Conditions name properties of the model that the
options of an upgrade decide (Stop SNMP, switchover, reboot, upload only).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from typing import Any

from transitions import Machine

from dma_upgrade.engine.state_table import destination


class UpgradeState(StrEnum):
    """Where one agent's upgrade stands."""

    SCHEDULED = "Scheduled"
    UPLOADED = "Uploaded"
    SNMP_STOPPED = "SNMPStopped"
    INSTALLING = "Installing"
    SWITCHED_OVER = "SwitchedOver"
    REBOOTING = "Rebooting"
    COMPLETED = "Completed"
    FAILED = "Failed"
    CANCELLED = "Cancelled"


TERMINAL_STATES = frozenset({UpgradeState.COMPLETED, UpgradeState.CANCELLED})
STOPPED_STATES = TERMINAL_STATES | {UpgradeState.FAILED}
"""States in which an upgrade needs nothing more from an engine (a failed one waits for an operator)."""
CANCELLABLE_STATES = (UpgradeState.SCHEDULED, UpgradeState.UPLOADED, UpgradeState.SNMP_STOPPED,
                      UpgradeState.FAILED)
RESUMABLE_STATES = (UpgradeState.SCHEDULED, UpgradeState.UPLOADED, UpgradeState.SNMP_STOPPED,
                    UpgradeState.INSTALLING, UpgradeState.SWITCHED_OVER, UpgradeState.REBOOTING)

S = UpgradeState


def _t(trigger: str, source: UpgradeState | list[str], dest: UpgradeState,
       conditions: list[str] | None = None, unless: list[str] | None = None) -> dict[str, Any]:
    sources = source if isinstance(source, list) else source.value
    row: dict[str, Any] = {"trigger": trigger, "source": sources, "dest": dest.value}
    if conditions:
        row["conditions"] = conditions
    if unless:
        row["unless"] = unless
    return row


TRANSITIONS: list[dict[str, Any]] = [
    _t("upload", S.SCHEDULED, S.UPLOADED),
    _t("stop_snmp", S.UPLOADED, S.SNMP_STOPPED, ["stops_snmp"], ["upload_only"]),
    _t("install", S.UPLOADED, S.INSTALLING, unless=["stops_snmp", "upload_only"]),
    _t("install", S.SNMP_STOPPED, S.INSTALLING),
    _t("reboot", S.INSTALLING, S.REBOOTING, ["reboots"], ["legacy_switch_first"]),
    _t("switch_over", S.INSTALLING, S.SWITCHED_OVER, ["switches_over"], ["reboots"]),
    _t("switch_over", S.REBOOTING, S.SWITCHED_OVER, ["switches_over"], ["legacy_switch_first"]),
    _t("complete", S.UPLOADED, S.COMPLETED, ["upload_only"]),
    _t("complete", S.INSTALLING, S.COMPLETED, unless=["switches_over", "reboots"]),
    _t("complete", S.REBOOTING, S.COMPLETED, unless=["switches_over"]),
    _t("complete", S.SWITCHED_OVER, S.COMPLETED, unless=["legacy_switch_first"]),
    _t("fail", [s.value for s in RESUMABLE_STATES], S.FAILED),
    *[_t("retry", [S.FAILED.value, S.CANCELLED.value], state, [f"resumes_to_{state.value}"])
      for state in RESUMABLE_STATES],
    _t("cancel", [s.value for s in CANCELLABLE_STATES], S.CANCELLED),
    # Histories recorded before the safety invariants switched over before the reboot and start:
    _t("switch_over", S.INSTALLING, S.SWITCHED_OVER, ["legacy_switch_first"]),
    _t("reboot", S.SWITCHED_OVER, S.REBOOTING, ["legacy_switch_first", "reboots"]),
    _t("complete", S.REBOOTING, S.COMPLETED, ["legacy_switch_first"]),
    _t("complete", S.SWITCHED_OVER, S.COMPLETED, ["legacy_switch_first"], ["reboots"]),
]
"""Every allowed move. A pair member switches over last, once it runs the new version: after the install,
the reboot if the rollout reboots, and the start (docs/invariants.md), so it passes Rebooting before
SwitchedOver. Failure is possible from any active state, retry resumes where the upgrade failed (or, when
an operator continues its rollout, where it was cancelled), and cancellation is refused once the agent's
installation has begun. The ``legacy_switch_first`` rows fold
histories recorded before that order (``StepOrder.LEGACY_SWITCH_BEFORE_REBOOT``); no new plan takes them."""

TRIGGERS: tuple[str, ...] = tuple(dict.fromkeys(row["trigger"] for row in TRANSITIONS))


@dataclass(frozen=True)
class MachineFlags:
    """The options of one upgrade that the table's conditions read."""

    stops_snmp: bool
    switches_over: bool
    reboots: bool
    upload_only: bool
    legacy_switch_first: bool = False


class _MachineModel:
    """A throwaway model attached to the shared machine for one check or one move."""

    state: str

    def __init__(self, flags: MachineFlags, resume_state: UpgradeState | None) -> None:
        self.stops_snmp = flags.stops_snmp
        self.switches_over = flags.switches_over
        self.reboots = flags.reboots
        self.upload_only = flags.upload_only
        self.legacy_switch_first = flags.legacy_switch_first
        for state in RESUMABLE_STATES:
            setattr(self, f"resumes_to_{state.value}", state == resume_state)


_MACHINE = Machine(model=None, states=[s.value for s in UpgradeState], transitions=TRANSITIONS,
                   initial=UpgradeState.SCHEDULED.value, auto_transitions=False)


Moves = dict[tuple[UpgradeState, str], UpgradeState]


@cache
def _moves(flags: MachineFlags, resume_state: UpgradeState | None) -> Moves:
    """Every allowed (state, trigger) -> state under these options, read off the machine once."""
    moves = {}
    for state in UpgradeState:
        for trigger in TRIGGERS:
            dest = destination(_MACHINE, _MachineModel(flags, resume_state), state.value, trigger)
            if dest is not None:
                moves[(state, trigger)] = UpgradeState(dest)
    return moves


def next_state(state: UpgradeState, trigger: str, flags: MachineFlags,
               resume_state: UpgradeState | None = None) -> UpgradeState | None:
    """The state ``trigger`` leads to from ``state`` under these options, or None if it is not allowed."""
    return _moves(flags, resume_state).get((state, trigger))
