"""``PhaseReports``: which install-phase reports are recorded at once, which one is held, and when."""

from __future__ import annotations

from datetime import timedelta

import pytest

from dma_upgrade.engine.phase_reports import PhaseReport, PhaseReports
from tests.conftest import FakeClock

LOCK, DISABLE, KILL = PhaseReport("Lock", 0, 12), PhaseReport("Disable", 1, 12), PhaseReport("Kill", 2, 12)


def test_the_first_report_is_recorded_then_one_per_interval_and_a_held_one_is_replaced_and_taken_once(
        clock: FakeClock) -> None:
    reports = PhaseReports(timedelta(seconds=5))
    assert reports.reported(LOCK, clock.now()) == LOCK
    assert reports.held() is None
    clock.advance(1)
    assert reports.reported(DISABLE, clock.now()) is None
    clock.advance(1)
    assert reports.reported(KILL, clock.now()) is None
    assert reports.held() == KILL
    assert reports.held() is None
    clock.advance(3)
    assert reports.reported(DISABLE, clock.now()) == DISABLE  # 5 s after the last one recorded
    clock.advance(4.999)
    assert reports.reported(KILL, clock.now()) is None
    clock.advance(0.001)
    assert reports.reported(KILL, clock.now()) == KILL
    assert reports.held() is None  # recording a later report drops the one held before it


def test_an_interval_of_zero_records_every_report_even_at_one_instant(clock: FakeClock) -> None:
    reports = PhaseReports(timedelta(0))
    assert [reports.reported(r, clock.now()) for r in (LOCK, DISABLE, KILL)] == [LOCK, DISABLE, KILL]
    assert reports.held() is None


def test_a_negative_interval_is_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        PhaseReports(timedelta(seconds=-1))


def test_the_phase_recorded_last_reported_again_is_not_recorded_twice_nor_held(clock: FakeClock) -> None:
    reports = PhaseReports(timedelta(seconds=5))
    assert reports.reported(LOCK, clock.now()) == LOCK
    clock.advance(60)
    assert reports.reported(LOCK, clock.now()) is None  # a keep-alive long after: nothing new
    assert reports.held() is None


def test_a_held_phase_the_install_stays_at_is_recorded_once_the_interval_has_passed(clock: FakeClock) -> None:
    reports = PhaseReports(timedelta(seconds=5))
    assert reports.reported(LOCK, clock.now()) == LOCK
    clock.advance(1)
    assert reports.reported(DISABLE, clock.now()) is None  # held: Lock was recorded a second ago
    clock.advance(3)
    assert reports.reported(DISABLE, clock.now()) is None  # a keep-alive 4 s after Lock: still held
    clock.advance(1)
    assert reports.reported(DISABLE, clock.now()) == DISABLE  # a keep-alive 5 s after Lock: recorded now
    assert reports.held() is None
    clock.advance(30)
    assert reports.reported(DISABLE, clock.now()) is None
