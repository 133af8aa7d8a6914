"""The documented upgrade paths, hop by hop: each rule of ``engine.upgrade_paths.RULES`` on its own and together."""

from __future__ import annotations

from pathlib import Path

import pytest

from dma_upgrade.engine import upgrade_paths
from dma_upgrade.engine.upgrade_paths import (
    RULES,
    RuleKind,
    UpgradePathRefused,
    check_upgrade_path,
    upgrade_path,
    upgrade_path_problems,
)
from dma_upgrade.engine.versions import parse_version

V = parse_version

CU19 = "10.0.0 CU19"
R10_2, R10_3, R10_4 = "10.2.0 with its latest CU", "10.3.0 with its latest CU", "10.4.0 with its latest CU"
R10_5_CU2 = "10.5.0 CU2 or a later 10.5.0 CU"
R10_5_5 = "10.5.5 or a later 10.5 Feature Release"


def hops(current: str, target: str) -> list[str]:
    """The labels of the hops before the target (the target itself is always the last hop)."""
    path = upgrade_path(V(current), V(target))
    assert path.refused is None, path.refused
    assert path.hops[-1].versions.label == str(V(target))
    return [hop.versions.label for hop in path.hops[:-1]]


@pytest.mark.parametrize(
    ("current", "target", "expected"),
    [
        # direct jumps
        ("10.0.0 CU19", "10.0.0 CU20", []),
        ("10.0.0 CU18", "10.0.0 CU19", []),
        ("9.6.0 CU13", "10.0.0 CU19", []),
        ("9.6.13", "10.0.0.0(CU19)-9999", []),
        ("10.3.0 CU20", "10.4.0 CU5", []),
        ("10.4.9", "10.5.0 CU2", []),
        ("10.4.0 CU3", "10.4.9", []),
        ("10.6.0", "10.6.3", []),
        ("10.9.0", "11.0.0", []),
        ("10.9.0", "10.10.0", []),
        # from 9.6.x or 10.0.0 before CU19: 10.0.0 CU19 first
        ("10.0.0 CU10", "10.0.0 CU21", [CU19]),
        ("9.6.0 CU13", "10.0.0 CU25", [CU19]),
        ("10.0.0.0-9454 CU5", "10.0.0.0-9454 CU20", [CU19]),
        # across majors: the latest CU of each major version in between
        ("10.1.0 CU9", "10.3.0", [R10_2]),
        ("10.2.0 CU5", "10.5.0", [R10_3, R10_4]),
        ("10.9.0", "11.2.0", ["11.0.0 with its latest CU", "11.1.0 with its latest CU"]),
        ("8.0.6.3-2304-20140407-release", "10.0.0 CU19", ["the last 9.x Main Release with its latest CU"]),
        # from before 10.1, skip 10.1 (it is not a major crossed)
        ("10.0.0 CU19", "10.2.0", []),
        ("10.0.0 CU19", "10.3.0", [R10_2]),
        ("9.6.0 CU13", "10.2.0", [CU19]),
        ("9.6.0 CU13", "10.5.0 CU5", [CU19, R10_2, R10_3, R10_4]),
        # a Feature Release is in the major version of its X.Y
        ("10.3.5", "10.4.0 CU5", []),
        ("10.3.5", "10.5.0", [R10_4]),
        # 10.6 and later only from 10.5.0 CU2 (or a later CU) or 10.5.5 (or later)
        ("10.5.0 CU2", "10.6.0", []),
        ("10.5.0.0(CU3)-15200", "10.6.2", []),
        ("10.5.5", "10.6.0", []),
        ("10.5.8", "10.6.1", []),
        ("10.5.0 CU1", "10.6.0", [R10_5_CU2]),
        ("10.5.0", "10.6.0", [R10_5_CU2]),
        ("10.5.4", "10.6.0", [R10_5_5]),
        ("10.5.1", "10.7.0", [R10_5_5, "10.6.0 with its latest CU"]),
        ("10.4.9", "10.6.0", [R10_5_CU2]),
        ("10.4.9", "10.7.0", [R10_5_CU2, "10.6.0 with its latest CU"]),
        # the rules together
        ("10.0.0 CU20", "11.0.0", [R10_2, R10_3, R10_4, R10_5_CU2]),
        ("9.6.0", "11.0.0", [CU19, R10_2, R10_3, R10_4, R10_5_CU2]),
        # not upgrades: one hop, judged elsewhere (same version, downgrade)
        ("10.6.0", "10.5.0 CU2", []),
        ("10.4.9.0-14794", "10.4.9.0-14794", []),
        ("10.4.9.0-14794", "10.4.9.0(CU0)-14800", []),
    ],
)
def test_the_chain_of_versions_to_install(current: str, target: str, expected: list[str]) -> None:
    assert hops(current, target) == expected
    path = upgrade_path(V(current), V(target))
    assert path.direct is (not expected)
    assert upgrade_path_problems(V(current), V(target)) == [
        f"upgrade {V(current)} to {label} first: {'; '.join(hop.rules)}"
        for label, hop in zip(expected, path.hops, strict=False)]


@pytest.mark.parametrize(
    ("current", "target", "fragment"),
    [
        ("10.0.0 CU19", "10.1.0 CU5", "from before 10.1, skip 10.1; go to 10.2.0 or later instead"),
        ("10.0.13", "10.1.12", "from before 10.1, skip 10.1"),
        ("9.6.0", "10.1.0", "from before 10.1, skip 10.1"),
        ("10.4.9", "10.4.0 CU5", "skip the Main Release X.Y.0: go to X.(Y+1).0 or later (10.5.0 or later here)"),
        ("10.5.3", "10.5.0 CU9", "skip the Main Release X.Y.0"),
    ],
)
def test_jumps_with_no_path_say_why(current: str, target: str, fragment: str) -> None:
    path = upgrade_path(V(current), V(target))
    assert path.hops == ()
    assert path.refused is not None and fragment in path.refused
    assert not path.direct
    assert upgrade_path_problems(V(current), V(target)) == ([path.refused] if V(target) > V(current) else [])


def test_from_10_1_on_10_1_is_an_ordinary_major() -> None:
    assert hops("10.1.0 CU9", "10.1.0 CU12") == []
    assert hops("10.1.5", "10.1.12") == []


def test_hops_ignore_builds_and_accept_any_version_in_their_range() -> None:
    path = upgrade_path(V("9.6.0"), V("10.4.0.0(CU2)-14000"))
    first, *_, last = path.hops
    assert first.covers(V("10.0.0.0(CU19)-9999")) and not first.covers(V("10.0.0.0(CU20)-10000"))
    ten_two = path.hops[1]
    assert ten_two.covers(V("10.2.0.0(CU14)-13000")) and ten_two.covers(V("10.2.0"))
    assert not ten_two.covers(V("10.2.1")) and not ten_two.covers(V("10.3.0"))
    assert last.covers(V("10.4.0.0(CU2)-14000")) and last.covers(V("10.4.0 CU2"))
    assert not last.covers(V("10.4.0.0(CU3)-14000"))


def test_the_10_5_hop_of_a_10_6_target_offers_both_documented_versions() -> None:
    [hop, _] = upgrade_path(V("10.5.4"), V("10.6.0")).hops
    assert hop.covers(V("10.5.5")) and hop.covers(V("10.5.9")) and not hop.covers(V("10.5.4"))
    [hop, _] = upgrade_path(V("10.5.0 CU1"), V("10.6.0")).hops
    assert hop.covers(V("10.5.0 CU2")) and hop.covers(V("10.5.0 CU7")) and not hop.covers(V("10.5.0 CU1"))


def test_each_hop_names_the_rules_that_make_it_a_step() -> None:
    first, second, _ = upgrade_path(V("9.6.0"), V("10.3.0")).hops
    assert first.rules == ("from 9.6.x or 10.0.0 before CU19, go to 10.0.0 CU19 first",)
    assert second.rules == ("across major versions, go through the latest CU of each major version in between",)


def test_describe_gives_the_chain_on_one_line() -> None:
    assert upgrade_path(V("10.2.0 CU5"), V("10.5.0.0-15000")).describe() == (
        "10.3.0 with its latest CU → 10.4.0 with its latest CU → 10.5.0.0-15000")


def test_check_refuses_a_jump_that_breaks_a_rule_naming_the_chain() -> None:
    with pytest.raises(UpgradePathRefused) as caught:
        check_upgrade_path("dma-01", V("10.2.0 CU5"), V("10.5.0.0-15000"))
    message = str(caught.value)
    assert message.startswith("agent dma-01: 10.2.0.0(CU5) cannot go to 10.5.0.0-15000 directly: install "
                              "10.3.0 with its latest CU → 10.4.0 with its latest CU → 10.5.0.0-15000")
    assert message.endswith("--skip-path-check to plan it anyway)")
    assert "\n" not in message
    with pytest.raises(UpgradePathRefused, match=r"skip 10\.1"):
        check_upgrade_path("dma-01", V("10.0.0 CU19"), V("10.1.0 CU5"))


def test_check_lets_a_direct_jump_and_a_non_upgrade_through() -> None:
    check_upgrade_path("dma-01", V("10.4.9"), V("10.5.0 CU2"))
    check_upgrade_path("dma-01", V("10.5.0 CU2"), V("10.4.0 CU9"))
    check_upgrade_path("dma-01", V("10.4.9"), V("10.4.0 CU5"))  # a downgrade: --allow-downgrade decides


def test_every_rule_names_its_source_and_each_kind_is_present() -> None:
    source = Path(upgrade_paths.__file__).read_text(encoding="utf-8")
    table = source[source.index("RULES: tuple[PathRule, ...] = ("):source.index("\n)\n")]
    assert table.count("# Source:") == len(RULES)
    assert {rule.kind for rule in RULES} == set(RuleKind)
