"""The documented upgrade paths of DataMiner: which jumps are allowed, and the chain of versions to install.

The rules are data: ``RULES`` below, one row per rule the DataMiner documentation states, each with its source.
``upgrade_path(current, target)`` applies them: it gives the hops to install in order (each a range of versions
that satisfies it, the last one the target), or why no chain leads there. Builds are ignored throughout.

Only upgrades are judged: a target that is not newer than the current version is one hop (a same-version
install or a downgrade is refused or permitted elsewhere), except that a Feature Release system is told the
Main Release of its own ``X.Y`` is not on its way.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

from dma_upgrade.engine.errors import InvalidInput
from dma_upgrade.engine.versions import DataMinerVersion

V = DataMinerVersion


class RuleKind(StrEnum):
    """How a rule shapes the path."""

    THROUGH = "through"
    """From below ``reaching`` to ``reaching`` or later, pass through a version in ``through`` first (a current
    version in ``through`` meets the rule)."""
    EACH_MAJOR = "each-major"
    """Across major versions ``A.B``, install the latest CU of each major version in between."""
    SKIP_MAJOR = "skip-major"
    """From before ``reaching``, the major version ``major`` is neither a step nor a target."""
    TRACK_SWITCH = "track-switch"
    """From a Feature Release ``X.Y.n``, the Main Release ``X.Y.0`` is not an upgrade: go to ``X.(Y+1).0``."""


@dataclass(frozen=True)
class VersionRange:
    """The versions ``low <= v < high`` (builds ignored), as a hop's text names them."""

    low: DataMinerVersion
    high: DataMinerVersion
    label: str

    def __contains__(self, version: object) -> bool:
        return isinstance(version, DataMinerVersion) and self.low <= replace(version, build=None) < self.high


@dataclass(frozen=True)
class PathRule:
    """One documented rule; which fields matter depends on ``kind``."""

    kind: RuleKind
    text: str
    reaching: DataMinerVersion | None = None
    through: tuple[VersionRange, ...] = ()
    major: tuple[int, int] | None = None


RULES: tuple[PathRule, ...] = (
    # Source: DataMiner docs, "Upgrading from DataMiner 9.6.x" / "Upgrading to DataMiner 10.0.0 CU19 or later"
    # (../shared/domain/dataminer-upgrade.md, Versions): from 9.6.x or 10.0.0 before CU19, go to 10.0.0 CU19 first.
    PathRule(RuleKind.THROUGH, "from 9.6.x or 10.0.0 before CU19, go to 10.0.0 CU19 first",
             reaching=V(10, 0, 0, cu=20),
             through=(VersionRange(V(10, 0, 0, cu=19), V(10, 0, 0, cu=20), "10.0.0 CU19"),)),
    # Source: DataMiner docs, "Upgrading to DataMiner 10.6.0 or later" (dataminer-upgrade.md, Versions):
    # 10.5.0 CU2 / 10.5.5 is required before 10.6 and later.
    PathRule(RuleKind.THROUGH, "to 10.6.0 or later only from 10.5.0 CU2 or a later CU, or from 10.5.5 or later",
             reaching=V(10, 6, 0),
             through=(VersionRange(V(10, 5, 0, cu=2), V(10, 5, 1), "10.5.0 CU2 or a later 10.5.0 CU"),
                      VersionRange(V(10, 5, 5), V(10, 6, 0), "10.5.5 or a later 10.5 Feature Release"))),
    # Source: DataMiner docs, "Upgrading across major versions" (dataminer-upgrade.md, Versions): across
    # majors, go through the latest CU of each next major version.
    PathRule(RuleKind.EACH_MAJOR, "across major versions, go through the latest CU of each major version in between"),
    # Source: DataMiner docs (dataminer-upgrade.md, Versions): from before 10.1, skip 10.1.
    PathRule(RuleKind.SKIP_MAJOR, "from before 10.1, skip 10.1", reaching=V(10, 1, 0), major=(10, 1)),
    # Source: DataMiner docs, "Switching from the Feature Release track to the Main Release track"
    # (dataminer-upgrade.md, Versions): an FR X.Y.n system skips the MR X.Y.0 (it would be a downgrade).
    PathRule(RuleKind.TRACK_SWITCH, "from a Feature Release X.Y.n to the Main Release track, skip the Main "
                                    "Release X.Y.0: go to X.(Y+1).0 or later"),
)


@dataclass(frozen=True)
class Hop:
    """One version to install on the way: any version in ``versions``; ``rules`` say why it is a step."""

    versions: VersionRange
    rules: tuple[str, ...] = ()

    def covers(self, version: DataMinerVersion) -> bool:
        """Whether a package of ``version`` can be installed for this hop."""
        return version in self.versions


@dataclass(frozen=True)
class UpgradePath:
    """The way from ``current`` to ``target``: ``hops`` in order (the last one the target), or ``refused``."""

    current: DataMinerVersion
    target: DataMinerVersion
    hops: tuple[Hop, ...]
    refused: str | None = None

    @property
    def direct(self) -> bool:
        """True when the target may be installed right away."""
        return self.refused is None and len(self.hops) == 1

    def describe(self) -> str:
        """One line: the chain to follow, or why there is none."""
        if self.refused is not None:
            return self.refused
        return " → ".join(hop.versions.label for hop in self.hops)


class UpgradePathRefused(InvalidInput):
    """A planned jump breaks the documented upgrade path; the message gives the chain to follow."""


def _bare(version: DataMinerVersion) -> DataMinerVersion:
    return replace(version, build=None)


def _upgrades(current: DataMinerVersion, target: DataMinerVersion) -> bool:
    return _bare(target) > _bare(current)


def _exactly(version: DataMinerVersion) -> VersionRange:
    bare = _bare(version)
    return VersionRange(bare, replace(bare, build=1), str(version))


def _major_range(major: int, minor: int | None) -> VersionRange:
    if minor is None:
        return VersionRange(V(major, 0, 0), V(major + 1, 0, 0), f"the last {major}.x Main Release with its latest CU")
    return VersionRange(V(major, minor, 0), V(major, minor, 1), f"{major}.{minor}.0 with its latest CU")


def _majors_between(now: DataMinerVersion, goal: DataMinerVersion) -> list[tuple[int, int | None]]:
    """The major versions strictly between: ``(A, B)``, or ``(A, None)`` for a whole ``A.x`` series whose
    count is unknown (across a change of A, the current ``A.B`` is taken as the last of its series)."""
    if now.major == goal.major:
        return [(goal.major, minor) for minor in range(now.minor + 1, goal.minor)]
    whole: list[tuple[int, int | None]] = [(major, None) for major in range(now.major + 1, goal.major)]
    return whole + [(goal.major, minor) for minor in range(goal.minor)]


def _refusal(current: DataMinerVersion, target: DataMinerVersion) -> str | None:
    """Why no chain leads from ``current`` to ``target`` (a SKIP_MAJOR or TRACK_SWITCH rule), if one says so."""
    now, goal = _bare(current), _bare(target)
    for rule in RULES:
        if (rule.kind is RuleKind.SKIP_MAJOR and rule.major is not None and rule.reaching is not None
                and now < rule.reaching and (goal.major, goal.minor) == rule.major):
            return (f"no path from {current} to {target}: {rule.text}; go to "
                    f"{rule.major[0]}.{rule.major[1] + 1}.0 or later instead")
        if (rule.kind is RuleKind.TRACK_SWITCH and now.is_feature_release and goal.is_main_release
                and (goal.major, goal.minor) == (now.major, now.minor)):
            return (f"no path from {current} to {target}: {rule.text} ({now.major}.{now.minor + 1}.0 "
                    f"or later here)")
    return None


def upgrade_path(current: DataMinerVersion, target: DataMinerVersion) -> UpgradePath:
    """The chain of versions to install to go from ``current`` to ``target``, by ``RULES``.

    The THROUGH rules that apply to ``current`` give the stops on the way (lowest first); before each stop, and
    before the target, the EACH_MAJOR rule adds the latest CU of each major version in between, leaving out
    the majors a SKIP_MAJOR rule skips."""
    now, goal = _bare(current), _bare(target)
    refused = _refusal(current, target)
    if refused is not None:
        return UpgradePath(current, target, (), refused)
    final = Hop(_exactly(target))
    if not _upgrades(current, target):
        return UpgradePath(current, target, (final,))
    stops = sorted((Hop(next(way for way in rule.through if now < way.high), (rule.text,)) for rule in RULES
                    if rule.kind is RuleKind.THROUGH and rule.reaching is not None
                    and now < rule.reaching <= goal and not any(now in way for way in rule.through)),
                   key=lambda hop: hop.versions.low)
    skipped = {rule.major for rule in RULES if rule.kind is RuleKind.SKIP_MAJOR
               and rule.reaching is not None and now < rule.reaching}
    each_major = tuple(rule.text for rule in RULES if rule.kind is RuleKind.EACH_MAJOR)
    hops: list[Hop] = []
    position = now
    for stop in (*stops, final):
        if each_major:
            hops += [Hop(_major_range(major, minor), each_major)
                     for major, minor in _majors_between(position, stop.versions.low) if (major, minor) not in skipped]
        hops.append(stop)
        position = stop.versions.low
    return UpgradePath(current, target, tuple(hops))


def upgrade_path_problems(current: DataMinerVersion, target: DataMinerVersion) -> list[str]:
    """Why the upgrade from ``current`` to ``target`` cannot be installed directly, one text per missing hop (empty
    when it can, and for a target that is not newer: see ``check_upgrade_path``)."""
    path = upgrade_path(current, target)
    if not _upgrades(current, target):
        return []
    if path.refused is not None:
        return [path.refused]
    return [f"upgrade {current} to {hop.versions.label} first: {'; '.join(hop.rules)}" for hop in path.hops[:-1]]


def check_upgrade_path(agent: str, current: DataMinerVersion, target: DataMinerVersion) -> None:
    """Refuse (``UpgradePathRefused``) an upgrade that breaks a rule, naming the chain to follow. A target that is
    not newer is no upgrade (a reinstall or a downgrade, judged by ``engine.version_choice``)."""
    path = upgrade_path(current, target)
    if path.direct or not _upgrades(current, target):
        return
    if path.refused is not None:
        raise UpgradePathRefused(f"agent {agent}: {path.refused} (--skip-path-check to plan it anyway)")
    raise UpgradePathRefused(f"agent {agent}: {current} cannot go to {target} directly: install "
                             f"{path.describe()} ({'; '.join(dict.fromkeys(r for h in path.hops for r in h.rules))}; "
                             f"--skip-path-check to plan it anyway)")
