"""Upgrade packages as data: the manifest, its prerequisite checks, agent facts and file names.

A package declares its prerequisites as data (``Update.zip/Prerequisites/``, mirrored in the
manifest). Each check names the agent fact it looks at, how it compares and the required values;
``evaluate_prerequisites`` judges one agent's reported facts against them.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from enum import StrEnum
from typing import TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)

from dma_upgrade.engine.errors import InvalidInput, describe_validation, shown
from dma_upgrade.engine.versions import DataMinerVersion, InvalidVersion, parse_version, refuses_unmet_prerequisites

INSTALL_PHASES: tuple[str, ...] = (
    "Lock", "Disable", "Kill", "IIS Stop", "Delete", "Update files", "Upgrade database", "Register",
    "Enable", "Unlock", "IIS Start", "Start",
)
"""The documented order of the action script an agent runs while installing a package."""


class PackageRejected(InvalidInput):
    """An upgrade package that is not accepted; ``reason`` says why in one line."""

    def __init__(self, package: str, reason: str) -> None:
        super().__init__(f"package {package!r} rejected: {reason}")
        self.package = package
        self.reason = reason


class PackageKind(StrEnum):
    """A Full upgrade replaces DataMiner; a Web upgrade only its web applications."""

    FULL = "Full"
    WEB = "Web"


class CheckName(StrEnum):
    """The agent fact a prerequisite check looks at."""

    MINIMUM_VERSION = "minimum-version"
    DOTNET = "dotnet"
    OS = "os"
    INDEXING_DATABASE = "indexing-database"
    NATS = "nats"
    PORTS = "ports"
    NO_LEGACY_FEATURES = "no-legacy-features"


class Comparison(StrEnum):
    """How the fact is compared with the required values."""

    AT_LEAST = "at-least"
    """The fact is at least one of the values (versions; an OS within its family)."""
    INCLUDES = "includes"
    """The fact, a set, holds every value."""
    ONE_OF = "one-of"
    """The fact equals one of the values."""
    IS_TRUE = "is-true"
    """The fact, a flag, is set; no values."""
    IS_EMPTY = "is-empty"
    """The fact, a list, is empty; no values."""


_ALLOWED: dict[CheckName, frozenset[Comparison]] = {
    CheckName.MINIMUM_VERSION: frozenset({Comparison.AT_LEAST}),
    CheckName.DOTNET: frozenset({Comparison.INCLUDES}),
    CheckName.OS: frozenset({Comparison.AT_LEAST, Comparison.ONE_OF}),
    CheckName.INDEXING_DATABASE: frozenset({Comparison.ONE_OF}),
    CheckName.NATS: frozenset({Comparison.IS_TRUE}),
    CheckName.PORTS: frozenset({Comparison.IS_TRUE}),
    CheckName.NO_LEGACY_FEATURES: frozenset({Comparison.IS_EMPTY}),
}

def _checked_version(text: str) -> DataMinerVersion:
    """``parse_version`` for validators: pydantic reports a ``ValueError`` as a field error."""
    try:
        return parse_version(text)
    except InvalidVersion as error:
        raise ValueError(str(error)) from None


_OS_RE = re.compile(r"Windows(?P<server> Server)? (?P<number>\d{1,4})(?P<r2> R2)?(?: .*)?", re.IGNORECASE)


def _os_rank(name: str) -> tuple[str, int] | None:
    """``("server", 20165)`` for "Windows Server 2016 R2", ``("client", 100)`` for "Windows 10"."""
    match = _OS_RE.fullmatch(name.strip())
    if match is None:
        return None
    family = "server" if match["server"] else "client"
    return family, int(match["number"]) * 10 + (5 if match["r2"] else 0)


class PrerequisiteCheck(BaseModel):
    """One prerequisite: which fact, how it compares, and the required values."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: CheckName
    comparison: Comparison
    required: tuple[str, ...] = ()

    @field_validator("required", mode="before")
    @classmethod
    def _one_value_as_tuple(cls, value: object) -> object:
        return (value,) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _consistent(self) -> PrerequisiteCheck:
        allowed = _ALLOWED[self.name]
        if self.comparison not in allowed:
            choices = ", ".join(sorted(allowed))
            raise ValueError(f"check {self.name} cannot compare {self.comparison}; use {choices}")
        takes_values = self.comparison not in (Comparison.IS_TRUE, Comparison.IS_EMPTY)
        if takes_values != bool(self.required):
            needs = "needs at least one required value" if takes_values else "takes no required values"
            raise ValueError(f"check {self.name} with {self.comparison} {needs}")
        if any(not value.strip() for value in self.required):
            raise ValueError(f"check {self.name} has an empty required value")
        if self.name is CheckName.MINIMUM_VERSION:
            if len(self.required) != 1:
                raise ValueError("check minimum-version needs exactly one required version")
            _checked_version(self.required[0])
        if self.name is CheckName.OS and self.comparison is Comparison.AT_LEAST:
            unknown = [value for value in self.required if _os_rank(value) is None]
            if unknown:
                raise ValueError(f"check os: unknown operating system {unknown[0]!r}; expected e.g. "
                                 f"'Windows Server 2016' or 'Windows 10'")
        return self

    @property
    def requirement(self) -> str:
        """What the check requires, for messages: ``>= 10.3.0.0``, ``one of opensearch, sql``."""
        values = ", ".join(self.required)
        match self.comparison:
            case Comparison.AT_LEAST:
                return ">= " + " or ".join(self.required)
            case Comparison.INCLUDES:
                return f"{values} installed"
            case Comparison.ONE_OF:
                return f"one of {values}"
            case Comparison.IS_TRUE:
                return "true"
            case Comparison.IS_EMPTY:
                return "none"


class PackageManifest(BaseModel):
    """The machine-readable description of a package: which version, what kind, which checks.

    ``version`` is the release number ``A.B.C.D`` only (normalised, so ``10.4.9`` becomes
    ``10.4.9.0``); the build and the CU have their own fields. Check names are unique.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: str
    build: int = Field(ge=0)
    cu: int | None = Field(default=None, ge=0)
    kind: PackageKind
    description: str = ""
    prerequisites: tuple[PrerequisiteCheck, ...] = ()

    @field_validator("version")
    @classmethod
    def _release_number(cls, value: str) -> str:
        parsed = _checked_version(value)
        if parsed.cu is not None or parsed.build is not None:
            raise ValueError(f"version {value!r} must be A.B.C.D only; give the CU and build in "
                             f"their own fields")
        return parsed.release_number

    @model_validator(mode="after")
    def _unique_checks(self) -> PackageManifest:
        names = [check.name for check in self.prerequisites]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"prerequisite checks must be unique; repeated: {', '.join(repeated)}")
        return self

    @classmethod
    def for_version(cls, version: DataMinerVersion, kind: PackageKind, description: str = "",
                    prerequisites: tuple[PrerequisiteCheck, ...] = ()) -> PackageManifest:
        """The manifest of a package of ``version``, which must carry a build."""
        if version.build is None:
            raise InvalidInput(f"a package version needs a build, e.g. {version.release_number}-14794; "
                               f"got {version}")
        return cls(version=version.release_number, build=version.build, cu=version.cu, kind=kind,
                   description=description, prerequisites=prerequisites)

    @property
    def dataminer_version(self) -> DataMinerVersion:
        """The full version this package installs, CU and build included."""
        return replace(parse_version(self.version), cu=self.cu, build=self.build)


class AgentFacts(BaseModel):
    """What one agent reports about itself, as prerequisite checks see it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: str
    os: str
    components: frozenset[str] = frozenset()
    database: str
    nats_running: bool
    ports_reachable: bool
    legacy_features: list[str] = Field(default_factory=list)
    snmp_agent_port: int = Field(default=161, ge=1, le=65535)
    windows_snmp_port: int = Field(default=161, ge=1, le=65535)

    @field_validator("version")
    @classmethod
    def _parseable(cls, value: str) -> str:
        _checked_version(value)
        return value

    @field_serializer("components")
    def _sorted(self, components: frozenset[str]) -> list[str]:
        """Sorted, so the same facts always serialise to the same JSON (set order varies by process)."""
        return sorted(components)


class PrerequisiteFailure(BaseModel):
    """A check one agent failed; ``blocking`` when the agent's version refuses the package."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    agent: str
    check: PrerequisiteCheck
    found: str
    blocking: bool

    def __str__(self) -> str:
        check = self.check
        return f"agent {self.agent}: check {check.name} requires {check.requirement}, found {self.found}"


def _listed(values: frozenset[str] | list[str]) -> str:
    return ", ".join(sorted(values)) if values else "none"


def _judge(check: PrerequisiteCheck, facts: AgentFacts) -> tuple[bool, str]:
    """Whether ``facts`` pass ``check``, and the fact found, as text."""
    match check.name:
        case CheckName.MINIMUM_VERSION:
            minimum = parse_version(check.required[0])
            return parse_version(facts.version) >= minimum, facts.version
        case CheckName.OS if check.comparison is Comparison.AT_LEAST:
            found = _os_rank(facts.os)
            minimums = [_os_rank(value) for value in check.required]
            passed = found is not None and any(
                minimum is not None and minimum[0] == found[0] and found[1] >= minimum[1]
                for minimum in minimums)
            return passed, facts.os
        case CheckName.OS:
            return facts.os in check.required, facts.os
        case CheckName.DOTNET:
            return set(check.required) <= facts.components, _listed(facts.components)
        case CheckName.INDEXING_DATABASE:
            return facts.database in check.required, facts.database
        case CheckName.NATS:
            return facts.nats_running, str(facts.nats_running).lower()
        case CheckName.PORTS:
            return facts.ports_reachable, str(facts.ports_reachable).lower()
        case CheckName.NO_LEGACY_FEATURES:
            return not facts.legacy_features, _listed(facts.legacy_features)


def evaluate_prerequisites(manifest: PackageManifest, agent_name: str,
                           facts: AgentFacts) -> list[PrerequisiteFailure]:
    """The checks of ``manifest`` that the agent fails, in manifest order (empty when all pass).

    Failures are ``blocking`` when the agent's version refuses packages with unmet prerequisites
    (``refuses_unmet_prerequisites``); on older agents they are warnings.
    """
    blocking = refuses_unmet_prerequisites(parse_version(facts.version))
    failures: list[PrerequisiteFailure] = []
    for check in manifest.prerequisites:
        passed, found = _judge(check, facts)
        if not passed:
            failures.append(PrerequisiteFailure(agent=agent_name, check=check, found=found,
                                                blocking=blocking))
    return failures


_FILE_NAME_RE = re.compile(r"DataMiner (?P<version>\S.*?) (?P<kind>Full|Web) Upgrade\.dmupgrade")
_FILE_NAME_FORM = "DataMiner <A.B.C.D>[(CU<n>)]-<build> <Full|Web> Upgrade.dmupgrade"


def package_file_name(manifest: PackageManifest) -> str:
    """The canonical file name, e.g. ``DataMiner 10.4.9.0-14794 Full Upgrade.dmupgrade``."""
    return f"DataMiner {manifest.dataminer_version} {manifest.kind} Upgrade.dmupgrade"


def parse_package_file_name(name: str) -> tuple[DataMinerVersion, PackageKind]:
    """The version (with build) and kind named by a package file name; ``PackageRejected`` if none."""
    match = _FILE_NAME_RE.fullmatch(name)
    if match is None:
        raise PackageRejected(name, f"file name does not follow {_FILE_NAME_FORM!r}")
    try:
        version = parse_version(match["version"])
    except InvalidInput as error:
        raise PackageRejected(name, str(error)) from None
    if version.build is None:
        raise PackageRejected(name, f"file name has no build; expected {_FILE_NAME_FORM!r}")
    return version, PackageKind(match["kind"])


_DATAMINER_FORM_RE = re.compile(r"DataMiner .*Upgrade\.dmupgrade", re.IGNORECASE | re.DOTALL)
DESCRIPTIONS: dict[PackageKind, str] = {kind: f"DataMiner Upgrade ({kind.value})" for kind in PackageKind}
"""What a DataMiner server upgrade's ``Description.txt`` says, by kind."""


def package_description(kind: PackageKind) -> str:
    """The ``Description.txt`` line of a package of ``kind``: ``DataMiner Upgrade (Full)``."""
    return DESCRIPTIONS[kind]


def check_identity(file_name: str, description: str, manifest: PackageManifest) -> None:
    """Refuse a package that is not the DataMiner server upgrade its manifest declares.

    ``description`` (the text of ``Description.txt``; its first non-blank line counts) must name a DataMiner
    server upgrade, Full or Web, of the manifest's kind. A file name of the DataMiner form (``DataMiner ...
    Upgrade.dmupgrade``) must name the version, build and kind inside; any other name is accepted on content.
    """
    said = next((line.strip() for line in description.splitlines() if line.strip()), "")
    kinds = {text.casefold(): kind for kind, text in DESCRIPTIONS.items()}
    kind = kinds.get(said.casefold())
    if kind is None:
        expected = " or ".join(repr(text) for text in DESCRIPTIONS.values())
        told = shown(said, 60) if said else "nothing"
        raise PackageRejected(file_name, f"Description.txt says {told}: not a DataMiner server upgrade "
                                         f"(expected {expected})")
    if kind is not manifest.kind:
        raise PackageRejected(file_name, f"Description.txt says a {kind.value} upgrade, the manifest a "
                                         f"{manifest.kind.value} one")
    if not _DATAMINER_FORM_RE.fullmatch(file_name):
        return
    named_version, named_kind = parse_package_file_name(file_name)
    inside = f"{manifest.dataminer_version} {manifest.kind.value}"
    if named_version != manifest.dataminer_version or named_kind is not manifest.kind:
        raise PackageRejected(file_name, f"the file name says {named_version} {named_kind.value}, the package "
                                         f"holds {inside}; rename it {package_file_name(manifest)!r} or rebuild it")


_Model = TypeVar("_Model", bound=BaseModel)


def _load_json(model: type[_Model], raw: bytes | str, source: str) -> _Model:
    try:
        data = json.loads(raw)
    except RecursionError:
        raise InvalidInput(f"{source} is not valid JSON: nested too deeply") from None
    except ValueError as error:
        raise InvalidInput(f"{source} is not valid JSON: {error}") from None
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise InvalidInput(f"{source}: {describe_validation(error)}") from None


def manifest_from_json(raw: bytes | str, source: str = "manifest") -> PackageManifest:
    """Parse a manifest; ``InvalidInput`` names ``source`` and every invalid field."""
    return _load_json(PackageManifest, raw, source)


def check_from_json(raw: bytes | str, source: str = "prerequisite check") -> PrerequisiteCheck:
    """Parse one prerequisite check; ``InvalidInput`` names ``source`` and every invalid field."""
    return _load_json(PrerequisiteCheck, raw, source)
