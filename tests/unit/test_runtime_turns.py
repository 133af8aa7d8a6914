"""Turns at the engine's work: served by rank, then in the order the places were taken; given back around
agent calls. Threads here only block on each other (events and joins), never on the clock."""

from __future__ import annotations

import threading

import pytest

from dma_upgrade.adapters.runtime.turns import FIRST, NEXT, Place, Turns

JOIN_SECONDS = 10.0


def hold_in_thread(turns: Turns, place: Place, name: str, served: list[str]) -> threading.Thread:
    """A thread that holds ``place``'s turn and notes its name while holding it."""

    def run() -> None:
        with turns.hold(place):
            served.append(name)

    thread = threading.Thread(target=run, name=name)
    thread.start()
    return thread


def test_a_free_turn_is_called_at_once_and_a_second_place_waits_for_it() -> None:
    turns = Turns(1)
    first = turns.line_up(NEXT)
    second = turns.line_up(NEXT)
    served: list[str] = []

    with turns.hold(first):
        waiting = hold_in_thread(turns, second, "second", served)
        assert served == []
    waiting.join(JOIN_SECONDS)

    assert served == ["second"]


def test_waiting_places_are_served_by_rank_then_in_the_order_taken() -> None:
    turns = Turns(1)
    holder = turns.line_up(NEXT)
    served: list[str] = []
    with turns.hold(holder):
        places = [("next-1", turns.line_up(NEXT)), ("first-1", turns.line_up(FIRST)),
                  ("next-2", turns.line_up(NEXT)), ("first-2", turns.line_up(FIRST))]
        threads = [hold_in_thread(turns, place, name, served) for name, place in reversed(places)]
    for thread in threads:
        thread.join(JOIN_SECONDS)

    assert served == ["first-1", "first-2", "next-1", "next-2"]


def test_a_thread_gives_its_turn_back_while_released_and_waits_behind_first_places_to_get_it_again() -> None:
    turns = Turns(1)
    served: list[str] = []
    with turns.hold(turns.line_up(FIRST)):
        later_first = turns.line_up(FIRST)
        with turns.released():
            thread = hold_in_thread(turns, later_first, "first", served)
            thread.join(JOIN_SECONDS)
        served.append("back")

    assert served == ["first", "back"]


def test_an_engine_needs_at_least_one_turn() -> None:
    with pytest.raises(ValueError, match="at least one turn"):
        Turns(0)
