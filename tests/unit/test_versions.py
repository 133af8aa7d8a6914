"""DataMiner versions: parsing, canonical text, ordering, identity and tracks (paths: test_upgrade_paths.py)."""

from __future__ import annotations

import pytest

from dma_upgrade.engine.errors import InvalidInput
from dma_upgrade.engine.versions import (
    DataMinerVersion,
    InvalidVersion,
    ReleaseTrack,
    is_downgrade,
    offered,
    parse_version,
    refuses_unmet_prerequisites,
    version_identity,
    version_sort_key,
)

V = parse_version


@pytest.mark.parametrize(
    ("text", "fields"),
    [
        ("10.4.9.0-14794", (10, 4, 9, 0, None, 14794)),
        ("10.5.5.0(CU0)-15664", (10, 5, 5, 0, 0, 15664)),
        ("10.0.0 CU19", (10, 0, 0, 0, 19, None)),
        ("10.0.0.0 CU19", (10, 0, 0, 0, 19, None)),
        ("10.0.0 cu19", (10, 0, 0, 0, 19, None)),
        ("10.0.0 CU19-9999", (10, 0, 0, 0, 19, 9999)),
        ("8.0.6.3-2304-20140407-release", (8, 0, 6, 3, None, 2304)),
        ("8.0.6.3-2304-20140407", (8, 0, 6, 3, None, 2304)),
        ("10.0.0.0-9454 CU20", (10, 0, 0, 0, 20, 9454)),
        ("10.4.0.0-14112 CU5", (10, 4, 0, 0, 5, 14112)),
        ("10.4.0.0-14112 cu5", (10, 4, 0, 0, 5, 14112)),
        ("10.4.9.0", (10, 4, 9, 0, None, None)),
        ("10.4.9", (10, 4, 9, 0, None, None)),
        ("10.4.0.0-14000", (10, 4, 0, 0, None, 14000)),
        ("10.3.0.0(CU12)", (10, 3, 0, 0, 12, None)),
        ("  10.4.9.0-14794\n", (10, 4, 9, 0, None, 14794)),
        ("9.6.0", (9, 6, 0, 0, None, None)),
        ("010.04.9.0", (10, 4, 9, 0, None, None)),
    ],
)
def test_parse_accepts_every_documented_form(text: str, fields: tuple[int | None, ...]) -> None:
    version = V(text)
    assert (version.major, version.minor, version.feature, version.patch, version.cu, version.build) == fields


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "abc",
        "10",
        "10.4",
        "10.4 CU3",
        "10.4.x.0",
        "v10.4.9.0",
        "-1.0.0",
        "10.-4.9",
        "10.4.9.0-",
        "10.4.9.0--14794",
        "10.4.9.0-build",
        "10.4.9.0.1",
        "10.4.9.0(CU)",
        "10.4.9.0(CU-1)",
        "10.4.9.0 (CU1)",
        "10.0.0CU19",
        "10.4.9.0-14794 Full",
        "8.0.6.3-2304-2014047-release",
        "8.0.6.3-2304-20140407-",
        "1.2.3.4.5",
        "10.4.9.0-1234567890",
        "\u0661\u0660.\u0664.\u0669",
        "10.4.9.0\n10.4.9.1",
        "10.4.0.0(CU1)-14112 CU5",
        "10.4.0 CU1-14112 CU5",
        "10.4.0.0-14112CU5",
        "10.4.0.0-14112 CU",
    ],
)
def test_parse_rejects_anything_else_naming_the_text(text: str) -> None:
    with pytest.raises(InvalidVersion) as caught:
        V(text)
    message = str(caught.value)
    assert repr(text) in message
    assert "\n" not in message
    assert isinstance(caught.value, InvalidInput)


def test_parse_rejects_an_impossible_build_date() -> None:
    with pytest.raises(InvalidVersion, match="build date 20141340 is not a date"):
        V("8.0.6.3-2304-20141340-release")


def test_invalid_version_message_truncates_a_huge_text() -> None:
    with pytest.raises(InvalidVersion) as caught:
        V("9" * 5000)
    assert len(str(caught.value)) < 300


def test_negative_numbers_are_refused_on_construction() -> None:
    with pytest.raises(InvalidVersion, match="negative"):
        DataMinerVersion(10, 4, 9, build=-1)


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("10.4.9.0-14794", "10.4.9.0-14794"),
        ("10.5.5.0(CU0)-15664", "10.5.5.0(CU0)-15664"),
        ("10.0.0 CU19", "10.0.0.0(CU19)"),
        ("10.0.0 CU19-9999", "10.0.0.0(CU19)-9999"),
        ("8.0.6.3-2304-20140407-release", "8.0.6.3-2304"),
        ("10.4.9", "10.4.9.0"),
        ("010.04.9.0", "10.4.9.0"),
        ("10.0.0.0-9454 CU20", "10.0.0.0(CU20)-9454"),
    ],
)
def test_str_is_canonical_and_round_trips(text: str, canonical: str) -> None:
    version = V(text)
    assert str(version) == canonical
    assert V(canonical) == version
    assert str(V(canonical)) == canonical


@pytest.mark.parametrize(
    ("lower", "higher"),
    [
        ("10.4.9.0-14794", "10.4.10.0-14800"),
        ("10.4.9.0", "10.4.9.1"),
        ("9.6.13", "10.0.0"),
        ("10.0.0 CU19", "10.0.0 CU20"),
        ("10.0.0 CU9", "10.0.0 CU10"),
        ("10.0.0 CU19", "10.0.0.0(CU19)-1"),
        ("10.4.9.0", "10.4.9.0-14794"),
        ("10.4.9.0-9999", "10.4.9.0-10000"),
        ("10.5.0.0(CU5)-15000", "10.5.5.0(CU0)-15664"),
        ("10.4.0 CU99", "10.4.1"),
        ("10.4.12", "10.5.0"),
        ("8.0.6.3-2304-20140407-release", "9.6.0"),
        ("10.4.0.0(CU1)-100", "10.4.0.0(CU2)-50"),
        ("10.9.0", "10.10.0"),
        ("10.4.9", "10.4.10"),
        ("10.4.12", "10.5.0 CU0"),
        ("10.0.0.0-9454 CU20", "10.0.0.0(CU21)-9000"),
    ],
)
def test_ordering_compares_a_b_c_d_then_cu_then_build(lower: str, higher: str) -> None:
    assert V(lower) < V(higher)
    assert V(lower) <= V(higher)
    assert V(higher) > V(lower)
    assert V(higher) >= V(lower)
    assert V(lower) != V(higher)


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("10.4.9.0", "10.4.9"),
        ("10.4.9.0", "10.4.9.0(CU0)"),
        ("10.4.9.0", "10.4.9.0-0"),
        ("10.0.0 CU19", "10.0.0.0(CU19)"),
        ("8.0.6.3-2304-20140407-release", "8.0.6.3-2304"),
        ("10.4.0.0-14112", "10.4.0.0(CU0)-14112"),
        ("10.4.0", "10.4.0.0"),
        ("10.0.0.0-9454 CU20", "10.0.0.0(CU20)-9454"),
        ("10.0.0 CU20-9454", "10.0.0.0-9454 CU20"),
    ],
)
def test_missing_cu_and_build_equal_zero(one: str, other: str) -> None:
    assert V(one) == V(other)
    assert hash(V(one)) == hash(V(other))
    assert V(one) <= V(other) <= V(one)
    assert V(one).identity == V(other).identity == version_identity(other)


def test_sorting_a_mixed_list() -> None:
    texts = ["10.5.0 CU2", "10.4.9.0-14794", "9.6.0", "10.0.0 CU19", "10.4.0.0(CU3)-14100", "10.5.5"]
    assert [str(v) for v in sorted(map(V, texts))] == [
        "9.6.0.0", "10.0.0.0(CU19)", "10.4.0.0(CU3)-14100", "10.4.9.0-14794", "10.5.0.0(CU2)", "10.5.5.0",
    ]


def test_comparing_with_something_else_is_not_equal_and_not_ordered() -> None:
    assert V("10.4.9.0") != "10.4.9.0"
    with pytest.raises(TypeError):
        assert V("10.4.9.0") < "10.4.9.1"


@pytest.mark.parametrize(
    ("text", "main", "track"),
    [
        ("10.4.0.0(CU3)-14100", True, ReleaseTrack.MAIN),
        ("10.0.0 CU19", True, ReleaseTrack.MAIN),
        ("10.4.9.0-14794", False, ReleaseTrack.FEATURE),
        ("10.5.1", False, ReleaseTrack.FEATURE),
        ("8.0.6.3-2304-20140407-release", False, ReleaseTrack.FEATURE),
    ],
)
def test_release_track_follows_the_third_number(text: str, main: bool, track: ReleaseTrack) -> None:
    version = V(text)
    assert version.is_main_release is main
    assert version.is_feature_release is not main
    assert version.release_track is track


def test_release_number_drops_cu_and_build() -> None:
    assert V("10.5.5.0(CU0)-15664").release_number == "10.5.5.0"


@pytest.mark.parametrize(
    ("text", "refuses"),
    [
        ("8.0.6.3-2304-20140407-release", False),
        ("9.6.0 CU13", False),
        ("9.6.13", False),
        ("10.0.0", False),
        ("10.0.0 CU19", False),
        ("10.0.0.0(CU19)-99999", False),
        ("10.0.0 CU20", True),
        ("10.0.0 CU21", True),
        ("10.0.5", False),
        ("10.0.13", False),
        ("10.1.0", False),
        ("10.1.0 CU8", False),
        ("10.1.0 CU9", True),
        ("10.1.1", False),
        ("10.1.11", False),
        ("10.1.12", True),
        ("10.1.13", True),
        ("10.2.0", True),
        ("10.2.0 CU0", True),
        ("10.2.5", True),
        ("10.4.9.0-14794", True),
        ("11.0.0", True),
    ],
)
def test_refusal_of_unmet_prerequisites_follows_release_history(text: str, refuses: bool) -> None:
    assert refuses_unmet_prerequisites(V(text)) is refuses


@pytest.mark.parametrize(
    ("current", "target", "downgrade", "is_offered"),
    [
        ("10.4.0.0(CU3)-14100", "10.4.0.0(CU4)-14200", False, True),
        ("10.4.0.0(CU3)-14100", "10.4.9.0-14794", False, True),
        ("10.4.9.0-14794", "10.5.0.0(CU0)-15000", False, True),
        ("10.4.9.0-14794", "10.4.0.0(CU12)-15500", True, False),
        ("10.5.3", "10.5.0 CU9", True, False),
        ("10.5.1", "10.5.0", True, False),
        ("10.4.9.0-14794", "10.4.9.0-14794", False, False),
        ("10.4.9.0-14794", "10.4.9.0-14800", False, True),
        ("10.4.9.0-14794", "10.4.8.0-14700", True, False),
        ("10.5.0 CU2", "10.4.0 CU20", True, False),
        ("10.0.0 CU19", "10.2.0", False, True),
    ],
)
def test_downgrades_are_never_offered(current: str, target: str, downgrade: bool, is_offered: bool) -> None:
    assert is_downgrade(V(current), V(target)) is downgrade
    assert offered(V(current), V(target)) is is_offered


def test_a_cu_named_twice_is_refused_saying_so() -> None:
    with pytest.raises(InvalidVersion, match="names a CU twice"):
        V("10.4.0.0(CU1)-14112 CU5")


def test_the_refusal_names_the_forms_expected() -> None:
    with pytest.raises(InvalidVersion) as caught:
        V("garbage")
    assert str(caught.value) == ("invalid DataMiner version 'garbage': expected A.B.C[.D], an optional CU and an "
                                 "optional -build, e.g. 10.4.9.0-14794, 10.5.5.0(CU0)-15664, 10.0.0 CU19 or "
                                 "10.0.0.0-9454 CU20")


@pytest.mark.parametrize(
    ("one", "other", "same"),
    [
        ("10.4.0.0-14112", "10.4.0.0(CU0)-14112", True),
        ("10.4.0", "10.4.0.0", True),
        ("10.4.0.0(CU3)", "10.4.0 CU3", True),
        ("10.4.0.0(CU3)", "10.4.0.0(CU4)", False),
        ("10.4.0.0-14112", "10.4.0.0-14113", False),
        ("not a version", " not a version ", True),
        ("not a version", "10.4.0", False),
    ],
)
def test_version_identity_ignores_notation_only(one: str, other: str, same: bool) -> None:
    assert (version_identity(one) == version_identity(other)) is same


def test_version_sort_key_is_numeric_with_text_that_is_no_version_last() -> None:
    texts = ["10.10.0", "garbage", "10.9.0", "10.0.0.0-9454 CU20", "9.6.13", "10.4.0.0(CU2)"]
    assert sorted(texts, key=version_sort_key) == ["9.6.13", "10.0.0.0-9454 CU20", "10.4.0.0(CU2)", "10.9.0",
                                                  "10.10.0", "garbage"]
