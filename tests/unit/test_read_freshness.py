"""How far behind a read model is: said in one line for people, carried in two headers by the API."""

from __future__ import annotations

from dma_upgrade.adapters.read.freshness import Lag


def test_a_read_model_behind_gives_a_note_and_one_caught_up_none() -> None:
    assert Lag("progress", 40, 42).note() == ("note: the progress read model is 2 events behind the log (at position "
                                              "40 of 42): what is shown may be out of date")
    assert Lag("progress", 42, 42).note() is None


def test_the_lag_goes_through_the_apis_headers_unchanged() -> None:
    lag = Lag("package_history", 7, 9)
    assert Lag.of_headers("package_history", lag.headers()) == lag


def test_an_answer_without_the_headers_or_with_other_text_gives_no_lag() -> None:
    assert Lag.of_headers("progress", {}) is None
    assert Lag.of_headers("progress", {"X-Read-Model-Position": "x", "X-Event-Store-Head": "9"}) is None
