"""Which install-phase reports of one install are recorded.

An install's phases are progress, not decisions (nothing the engine decides reads them), and an agent may report
its twelve in a few seconds: recording each one costs an append apiece and buries the audit's decisions. So the
audit keeps, of each install the engine sends:

- the first phase reported (when the agent began, or the phase it stood at when an engine picked the install up);
- then at most one every ``interval``: a phase reported sooner is held, and a later one replaces it; a gateway
  reports the phase the install is still at again on each of the agent's keep-alives (``PhaseReporter``), so a
  held phase the install stays at is recorded once the interval has passed (within a keep-alive of it);
- and always the phase the install stood at when its outcome is recorded (done, refused or in doubt): the held
  report is recorded with the outcome, in the same append.

A phase already recorded and reported again is not recorded twice. What the audit gives up is the time of the
phases passed in between; their order and count stay in each recorded report's ``phase_index`` and
``phase_count``. An interval of zero records every phase.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import NamedTuple


class PhaseReport(NamedTuple):
    """A phase as the agent reported it: its name, and its place among the install's phases."""

    phase: str
    phase_index: int
    phase_count: int


class PhaseReports:
    """The phase reports of one send of an install, sorted into those recorded now and the one held."""

    def __init__(self, interval: timedelta) -> None:
        if interval < timedelta(0):
            raise ValueError(f"the interval between recorded phases cannot be negative: {interval}")
        self._interval = interval
        self._recorded: PhaseReport | None = None
        self._recorded_at: datetime | None = None
        self._held: PhaseReport | None = None

    def reported(self, report: PhaseReport, now: datetime) -> PhaseReport | None:
        """The report to record now, or None: when it is the phase recorded last, reported again, or when it is
        held (a report was recorded less than ``interval`` before ``now``)."""
        if report == self._recorded:
            return None
        if self._recorded_at is not None and now - self._recorded_at < self._interval:
            self._held = report
            return None
        self._recorded, self._recorded_at, self._held = report, now, None
        return report

    def held(self) -> PhaseReport | None:
        """The latest report not recorded yet, to record with the install's outcome (taken: asked again, None)."""
        report, self._held = self._held, None
        return report
