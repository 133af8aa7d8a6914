"""DataMiner versions: parsing, ordering and release tracks (the upgrade-path rules: ``engine.upgrade_paths``).

Accepted forms (surrounding whitespace ignored, ``CU`` in any case):

- ``A.B.C`` or ``A.B.C.D`` (``D`` defaults to 0), e.g. ``10.4.9.0`` or ``10.0.0``;
- a Cumulative Update in brackets or in prose: ``10.5.5.0(CU0)``, ``10.0.0 CU19``;
- a build after a dash: ``10.4.9.0-14794``, ``10.5.5.0(CU0)-15664``, with a prose CU after the build too:
  ``10.0.0.0-9454 CU20``;
- the old form with a build date and a suffix: ``8.0.6.3-2304-20140407-release``. The date and suffix
  are checked but not kept: they are not part of a version's identity.

Two parts (``10.4 CU3``) are refused: the third number decides the release track.

The canonical text, which ``parse_version`` reads back to an equal version, is the package-name form
``A.B.C.D[(CUn)][-build]``: ``10.0.0 CU19`` prints as ``10.0.0.0(CU19)``.

Ordering compares A, B, C, D, then CU, then build, numerically; a missing CU or build counts as 0,
so ``10.0.0 CU19`` sorts before every build of 10.0.0 CU19. Equality follows the same key, so
``10.4.9.0 == 10.4.9.0(CU0)``: the order is total and consistent with ``==`` and ``hash``. ``identity`` is a
text that equal versions share whatever their notation (what comparisons of stored version texts use).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from functools import total_ordering

from dma_upgrade.engine.errors import InvalidInput, shown

_EXPECTED = ("expected A.B.C[.D], an optional CU and an optional -build, e.g. 10.4.9.0-14794, "
             "10.5.5.0(CU0)-15664, 10.0.0 CU19 or 10.0.0.0-9454 CU20")

_VERSION_RE = re.compile(
    r"""
    (?P<major>\d{1,9})\.(?P<minor>\d{1,9})\.(?P<feature>\d{1,9})(?:\.(?P<patch>\d{1,9}))?
    (?:\(CU(?P<bracket_cu>\d{1,9})\)|[ ]+CU(?P<prose_cu>\d{1,9}))?
    (?:-(?P<build>\d{1,9})(?:-(?P<date>\d{8})(?:-[A-Za-z0-9]+)?)?)?
    (?:[ ]+CU(?P<late_cu>\d{1,9}))?
    """,
    re.VERBOSE | re.ASCII | re.IGNORECASE,
)


class InvalidVersion(InvalidInput):
    """A text that is not a DataMiner version."""

    def __init__(self, text: str, reason: str = _EXPECTED) -> None:
        super().__init__(f"invalid DataMiner version {shown(text, 60)}: {reason}")
        self.text = text


class ReleaseTrack(StrEnum):
    """Main Releases ``X.Y.0`` get Cumulative Updates; Feature Releases ``X.Y.n`` come monthly."""

    MAIN = "Main Release"
    FEATURE = "Feature Release"


@total_ordering
@dataclass(frozen=True, eq=False)
class DataMinerVersion:
    """One DataMiner version ``major.minor.feature.patch`` with optional CU and build."""

    major: int
    minor: int
    feature: int
    patch: int = 0
    cu: int | None = None
    build: int | None = None

    def __post_init__(self) -> None:
        numbers = (self.major, self.minor, self.feature, self.patch, self.cu, self.build)
        if any(number is not None and number < 0 for number in numbers):
            raise InvalidVersion(str(self), "numbers cannot be negative")

    def _key(self) -> tuple[int, int, int, int, int, int]:
        return (self.major, self.minor, self.feature, self.patch, self.cu or 0, self.build or 0)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DataMinerVersion):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, DataMinerVersion):
            return NotImplemented
        return self._key() < other._key()

    def __str__(self) -> str:
        cu = f"(CU{self.cu})" if self.cu is not None else ""
        build = f"-{self.build}" if self.build is not None else ""
        return f"{self.release_number}{cu}{build}"

    @property
    def identity(self) -> str:
        """The canonical text without a CU0 or a build 0: equal versions, and only they, share it."""
        cu = f"(CU{self.cu})" if self.cu else ""
        build = f"-{self.build}" if self.build else ""
        return f"{self.release_number}{cu}{build}"

    @property
    def release_number(self) -> str:
        """``A.B.C.D`` alone, without CU or build."""
        return f"{self.major}.{self.minor}.{self.feature}.{self.patch}"

    @property
    def is_main_release(self) -> bool:
        """True for a Main Release ``X.Y.0``."""
        return self.feature == 0

    @property
    def is_feature_release(self) -> bool:
        """True for a Feature Release ``X.Y.n`` with n >= 1."""
        return self.feature >= 1

    @property
    def release_track(self) -> ReleaseTrack:
        """The track this version belongs to."""
        return ReleaseTrack.MAIN if self.is_main_release else ReleaseTrack.FEATURE


def parse_version(text: str) -> DataMinerVersion:
    """Parse any accepted form of a DataMiner version; raise ``InvalidVersion`` otherwise."""
    match = _VERSION_RE.fullmatch(text.strip())
    if match is None:
        raise InvalidVersion(text)
    build_date = match["date"]
    if build_date is not None:
        try:
            date(int(build_date[:4]), int(build_date[4:6]), int(build_date[6:]))
        except ValueError:
            raise InvalidVersion(text, f"build date {build_date} is not a date (YYYYMMDD)") from None
    if match["late_cu"] is not None and (match["bracket_cu"] or match["prose_cu"]) is not None:
        raise InvalidVersion(text, "it names a CU twice")
    cu = match["bracket_cu"] or match["prose_cu"] or match["late_cu"]
    return DataMinerVersion(
        major=int(match["major"]),
        minor=int(match["minor"]),
        feature=int(match["feature"]),
        patch=int(match["patch"] or 0),
        cu=int(cu) if cu is not None else None,
        build=int(match["build"]) if match["build"] is not None else None,
    )


def version_identity(text: str) -> str:
    """``parse_version(text).identity``, or the text itself (stripped) when it is no version: how stored
    version texts are grouped, so that ``10.4.0`` and ``10.4.0.0(CU0)`` are one version."""
    try:
        return parse_version(text).identity
    except InvalidVersion:
        return text.strip()


def version_sort_key(text: str) -> tuple[tuple[int, ...], str]:
    """Sort stored version texts numerically (``10.10`` after ``10.9``); a text that is no version last."""
    try:
        version = parse_version(text)
    except InvalidVersion:
        return (1 << 31,), text
    return (version.major, version.minor, version.feature, version.patch, version.cu or 0, version.build or 0), ""


def refuses_unmet_prerequisites(version: DataMinerVersion) -> bool:
    """Whether an agent on ``version`` refuses a package whose prerequisites it does not meet.

    Skyline added the refusal in Feature Release 10.1.12 and back-ported it to 10.0.0 CU20 and
    10.1.0 CU9, so the rule follows release history, not plain ordering: the 10.0.n and 10.1.1-10.1.11
    Feature Releases predate it (False) although they sort after 10.0.0 CU20; 10.2 and later, 11+
    included, have it (True); 9.x and older do not (False).
    """
    cu = version.cu or 0
    if version.major != 10:
        return version.major > 10
    if version.minor == 0:
        return version.feature == 0 and cu >= 20
    if version.minor == 1:
        return version.feature >= 12 or (version.feature == 0 and cu >= 9)
    return True


def is_downgrade(current: DataMinerVersion, target: DataMinerVersion) -> bool:
    """True when ``target`` is older than ``current`` (done by installing the older full package)."""
    return target < current


def offered(current: DataMinerVersion, target: DataMinerVersion) -> bool:
    """Whether a system on ``current`` is offered ``target`` as an upgrade: only newer versions are.

    This covers the track rule: a Feature Release ``X.Y.n`` (n >= 1) is never offered the Main
    Release ``X.Y.0`` with any CU, because ``X.Y.0`` sorts before ``X.Y.n``.
    """
    return target > current
