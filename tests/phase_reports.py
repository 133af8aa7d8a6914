"""What a test's ``on_phase`` saw, as the phases an install reached."""

from __future__ import annotations

from typing import TypeVar

Reported = TypeVar("Reported")


def reached(reports: list[Reported]) -> list[Reported]:
    """The phases an install reached, from what ``on_phase`` was given: a phase the HTTP gateway reported again on a
    keep-alive (``PhaseReporter``), as it does while the agent waits at it or works on it, counts once."""
    return [report for i, report in enumerate(reports) if i == 0 or reports[i - 1] != report]
