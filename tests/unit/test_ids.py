"""The ids the engine makes (``UuidFactory``): version 7 UUIDs, in time order, unique within a millisecond."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from freezegun import freeze_time

from dma_upgrade.adapters.clock import UuidFactory, short_id, uuid7

AT = datetime(2026, 12, 5, 9, 30, 15, 123456, tzinfo=UTC)
AT_NS = int(AT.timestamp()) * 1_000_000_000 + AT.microsecond * 1000


def test_an_id_is_a_version_7_uuid_of_the_rfc_variant_carrying_its_millisecond() -> None:
    made = uuid7(AT_NS)

    assert made.version == 7
    assert made.variant == uuid.RFC_4122
    assert made.int >> 80 == AT_NS // 1_000_000
    assert uuid.UUID(str(made)) == made


def test_ids_of_later_milliseconds_sort_later_as_uuids_and_as_text() -> None:
    ids = [uuid7(AT_NS + step * 1_000_000) for step in range(50)]

    assert sorted(ids) == ids
    assert sorted(map(str, ids)) == list(map(str, ids))
    assert sorted(i.hex for i in ids) == [i.hex for i in ids]  # as SQLite stores them


def test_ids_of_one_millisecond_differ_in_their_random_bits_only() -> None:
    ids = {uuid7(AT_NS) for _ in range(10_000)}

    assert len(ids) == 10_000
    assert {i.int >> 80 for i in ids} == {AT_NS // 1_000_000}
    assert {i.version for i in ids} == {7}
    assert {i.variant for i in ids} == {uuid.RFC_4122}


def test_the_factorys_ids_carry_the_time_and_stay_distinct_when_the_clock_stands_still() -> None:
    with freeze_time(AT):
        ids = [UuidFactory().new_id() for _ in range(1000)]

    assert len(set(ids)) == 1000
    assert {i.int >> 80 for i in ids} == {AT_NS // 1_000_000}


def test_ids_made_in_one_minute_read_apart_in_their_short_form() -> None:
    ids = [str(uuid7(AT_NS + step * 1_000_000)) for step in range(1000)]  # one second's worth

    assert len({i[:8] for i in ids}) == 1  # the first digits are the time: the same for all
    assert len({short_id(i) for i in ids}) == 1000
