"""Package manifests, prerequisite checks against agent facts, and package file names."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from dma_upgrade.engine.errors import InvalidInput
from dma_upgrade.engine.packages import (
    AgentFacts,
    CheckName,
    Comparison,
    PackageKind,
    PackageManifest,
    PackageRejected,
    PrerequisiteCheck,
    check_from_json,
    evaluate_prerequisites,
    manifest_from_json,
    package_file_name,
    parse_package_file_name,
)
from dma_upgrade.engine.versions import parse_version

ALL_CHECKS = (
    PrerequisiteCheck(name=CheckName.MINIMUM_VERSION, comparison=Comparison.AT_LEAST, required=("10.3.0.0",)),
    PrerequisiteCheck(name=CheckName.DOTNET, comparison=Comparison.INCLUDES,
                      required=("dotnet-8", "aspnetcore-8")),
    PrerequisiteCheck(name=CheckName.OS, comparison=Comparison.AT_LEAST,
                      required=("Windows Server 2016", "Windows 10")),
    PrerequisiteCheck(name=CheckName.INDEXING_DATABASE, comparison=Comparison.ONE_OF,
                      required=("cassandra-cluster", "opensearch")),
    PrerequisiteCheck(name=CheckName.NATS, comparison=Comparison.IS_TRUE),
    PrerequisiteCheck(name=CheckName.PORTS, comparison=Comparison.IS_TRUE),
    PrerequisiteCheck(name=CheckName.NO_LEGACY_FEATURES, comparison=Comparison.IS_EMPTY),
)

MANIFEST = PackageManifest(version="10.4.9.0", build=14794, kind=PackageKind.FULL, prerequisites=ALL_CHECKS)

GOOD_FACTS: dict[str, Any] = {
    "version": "10.4.0.0(CU3)-14100",
    "os": "Windows Server 2019",
    "components": {"dotnet-8", "aspnetcore-8", "other"},
    "database": "cassandra-cluster",
    "nats_running": True,
    "ports_reachable": True,
    "legacy_features": [],
}


def facts(**changes: Any) -> AgentFacts:
    return AgentFacts(**{**GOOD_FACTS, **changes})


def test_an_agent_meeting_every_check_has_no_failures() -> None:
    assert evaluate_prerequisites(MANIFEST, "dma-01", facts()) == []


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"version": "10.2.0.0-12000"},
         "agent dma-03: check minimum-version requires >= 10.3.0.0, found 10.2.0.0-12000"),
        ({"components": {"dotnet-8"}},
         "agent dma-03: check dotnet requires dotnet-8, aspnetcore-8 installed, found dotnet-8"),
        ({"components": set()},
         "agent dma-03: check dotnet requires dotnet-8, aspnetcore-8 installed, found none"),
        ({"os": "Windows Server 2012 R2"},
         "agent dma-03: check os requires >= Windows Server 2016 or Windows 10, "
         "found Windows Server 2012 R2"),
        ({"os": "Windows 8.1"},
         "agent dma-03: check os requires >= Windows Server 2016 or Windows 10, found Windows 8.1"),
        ({"os": "Ubuntu 22.04"},
         "agent dma-03: check os requires >= Windows Server 2016 or Windows 10, found Ubuntu 22.04"),
        ({"database": "sql"},
         "agent dma-03: check indexing-database requires one of cassandra-cluster, opensearch, found sql"),
        ({"nats_running": False}, "agent dma-03: check nats requires true, found false"),
        ({"ports_reachable": False}, "agent dma-03: check ports requires true, found false"),
        ({"legacy_features": ["Ticketing", "Annotations"]},
         "agent dma-03: check no-legacy-features requires none, found Annotations, Ticketing"),
    ],
)
def test_each_failed_check_names_agent_check_and_value_found(changes: dict[str, Any], message: str) -> None:
    [failure] = evaluate_prerequisites(MANIFEST, "dma-03", facts(**changes))
    assert str(failure) == message
    assert failure.agent == "dma-03"


@pytest.mark.parametrize(
    "os_name",
    ["Windows Server 2016", "Windows Server 2019 Datacenter", "Windows Server 2022", "Windows Server 2025",
     "Windows 10", "Windows 11 Pro", "windows server 2016"],
)
def test_os_at_least_accepts_newer_systems_of_either_family(os_name: str) -> None:
    assert evaluate_prerequisites(MANIFEST, "dma-01", facts(os=os_name)) == []


def test_os_one_of_requires_an_exact_name() -> None:
    check = PrerequisiteCheck(name=CheckName.OS, comparison=Comparison.ONE_OF,
                              required=("Windows Server 2022",))
    manifest = MANIFEST.model_copy(update={"prerequisites": (check,)})
    assert evaluate_prerequisites(manifest, "dma-01", facts(os="Windows Server 2022")) == []
    [failure] = evaluate_prerequisites(manifest, "dma-01", facts(os="Windows Server 2025"))
    assert str(failure) == ("agent dma-01: check os requires one of Windows Server 2022, "
                            "found Windows Server 2025")


def test_failures_keep_manifest_order() -> None:
    failures = evaluate_prerequisites(MANIFEST, "dma-02", facts(version="10.1.0 CU9", nats_running=False))
    assert [failure.check.name for failure in failures] == [CheckName.MINIMUM_VERSION, CheckName.NATS]


@pytest.mark.parametrize(
    ("version", "blocking"),
    [("10.0.0 CU19", False), ("10.0.0 CU20", True), ("10.1.11", False), ("10.1.12", True), ("9.6.0", False)],
)
def test_failures_block_only_on_agents_that_refuse_unmet_prerequisites(version: str, blocking: bool) -> None:
    failures = evaluate_prerequisites(MANIFEST, "dma-01", facts(version=version))
    assert failures
    assert all(failure.blocking is blocking for failure in failures)


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"name": "minimum-version", "comparison": "includes", "required": ["10.3.0.0"]},
         "cannot compare includes; use at-least"),
        ({"name": "nats", "comparison": "is-true", "required": ["yes"]}, "takes no required values"),
        ({"name": "dotnet", "comparison": "includes", "required": []}, "needs at least one required value"),
        ({"name": "dotnet", "comparison": "includes", "required": ["  "]}, "empty required value"),
        ({"name": "minimum-version", "comparison": "at-least", "required": ["10.3.0.0", "10.4.0.0"]},
         "exactly one required version"),
        ({"name": "minimum-version", "comparison": "at-least", "required": "ten"},
         "invalid DataMiner version 'ten'"),
        ({"name": "os", "comparison": "at-least", "required": ["Solaris 10"]},
         "unknown operating system 'Solaris 10'"),
        ({"name": "cpu", "comparison": "at-least", "required": ["4"]}, "name"),
        ({"name": "nats", "comparison": "equals"}, "comparison"),
        ({"name": "nats", "comparison": "is-true", "extra": 1}, "extra"),
    ],
)
def test_invalid_checks_are_refused(data: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment):
        PrerequisiteCheck.model_validate(data)


def test_a_single_required_value_may_be_written_as_a_string() -> None:
    check = PrerequisiteCheck.model_validate(
        {"name": "minimum-version", "comparison": "at-least", "required": "10.3.0.0"})
    assert check.required == ("10.3.0.0",)


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"version": "10.4"}, "invalid DataMiner version '10.4'"),
        ({"version": "10.4.9.0-14794"}, "must be A.B.C.D only"),
        ({"version": "10.4.9 CU2"}, "must be A.B.C.D only"),
        ({"build": -1}, "greater than or equal to 0"),
        ({"cu": -2}, "greater than or equal to 0"),
        ({"kind": "Partial"}, "'Full' or 'Web'"),
        ({"prerequisites": [ALL_CHECKS[4], ALL_CHECKS[4]]}, "repeated: nats"),
        ({"surprise": True}, "Extra inputs"),
    ],
)
def test_invalid_manifests_are_refused(changes: dict[str, Any], fragment: str) -> None:
    data = {"version": "10.4.9.0", "build": 14794, "kind": "Full", **changes}
    with pytest.raises(ValidationError, match=fragment):
        PackageManifest.model_validate(data)


def test_manifest_version_is_normalised_to_four_numbers() -> None:
    manifest = PackageManifest(version="10.4.9", build=14794, kind=PackageKind.WEB)
    assert manifest.version == "10.4.9.0"
    assert manifest.dataminer_version == parse_version("10.4.9.0-14794")


def test_manifest_for_version_takes_cu_and_build_from_the_version() -> None:
    manifest = PackageManifest.for_version(parse_version("10.5.5.0(CU0)-15664"), PackageKind.FULL, "May FR")
    assert (manifest.version, manifest.cu, manifest.build) == ("10.5.5.0", 0, 15664)
    assert manifest.description == "May FR"


def test_manifest_for_version_needs_a_build() -> None:
    with pytest.raises(InvalidInput, match="needs a build"):
        PackageManifest.for_version(parse_version("10.0.0 CU19"), PackageKind.FULL)


def test_manifest_json_round_trips() -> None:
    assert manifest_from_json(MANIFEST.model_dump_json()) == MANIFEST


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"{not json", "manifest.json is not valid JSON"),
        (b"\xff\xfe\x00", "manifest.json is not valid JSON"),
        (b"[]", "manifest.json: Input should be a valid dictionary"),
        (b'{"version": "10.4.9.0", "kind": "Full"}', "manifest.json: field 'build': Field required"),
        (b'{"version": "x", "build": 1, "kind": "Full"}',
         "manifest.json: field 'version': invalid DataMiner version 'x'"),
        (b'{"version": "10.4.9.0", "build": 1, "kind": "Full", "prerequisites": [{"name": "nats"}]}',
         "manifest.json: field 'prerequisites.0.comparison': Field required"),
    ],
)
def test_manifest_from_json_names_the_source_and_field(raw: bytes, message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        manifest_from_json(raw, "manifest.json")
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_check_from_json_names_the_source() -> None:
    assert check_from_json('{"name": "ports", "comparison": "is-true"}') == ALL_CHECKS[5]
    with pytest.raises(InvalidInput, match=r"^Prerequisites/os\.json: field 'name'"):
        check_from_json('{"name": "o", "comparison": "is-true"}', "Prerequisites/os.json")


def test_agent_facts_serialise_components_in_sorted_order() -> None:
    agent = facts(components={"zeta", "alpha", "mid"})
    assert agent.model_dump(mode="json")["components"] == ["alpha", "mid", "zeta"]
    assert AgentFacts.model_validate_json(agent.model_dump_json()) == agent


def test_agent_facts_defaults_and_validation() -> None:
    agent = AgentFacts(version="10.4.9.0-14794", os="Windows Server 2019", database="opensearch",
                       nats_running=True, ports_reachable=True)
    assert (agent.components, agent.legacy_features) == (frozenset(), [])
    assert (agent.snmp_agent_port, agent.windows_snmp_port) == (161, 161)
    with pytest.raises(ValidationError, match="invalid DataMiner version 'latest'"):
        facts(version="latest")
    with pytest.raises(ValidationError, match="less than or equal to 65535"):
        facts(snmp_agent_port=70000)


@pytest.mark.parametrize(
    ("manifest", "name"),
    [
        (PackageManifest(version="10.4.9.0", build=14794, kind=PackageKind.FULL),
         "DataMiner 10.4.9.0-14794 Full Upgrade.dmupgrade"),
        (PackageManifest(version="10.5.5.0", build=15664, cu=0, kind=PackageKind.FULL),
         "DataMiner 10.5.5.0(CU0)-15664 Full Upgrade.dmupgrade"),
        (PackageManifest(version="10.3.0", build=13000, cu=12, kind=PackageKind.WEB),
         "DataMiner 10.3.0.0(CU12)-13000 Web Upgrade.dmupgrade"),
    ],
)
def test_package_file_name_round_trips(manifest: PackageManifest, name: str) -> None:
    assert package_file_name(manifest) == name
    assert parse_package_file_name(name) == (manifest.dataminer_version, manifest.kind)


def test_parse_package_file_name_accepts_the_old_version_form() -> None:
    version, kind = parse_package_file_name("DataMiner 8.0.6.3-2304-20140407-release Full Upgrade.dmupgrade")
    assert (str(version), kind) == ("8.0.6.3-2304", PackageKind.FULL)


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("DataMiner 10.4.9.0-14794 Full Upgrade.zip", "does not follow"),
        ("DataMiner 10.4.9.0-14794 Partial Upgrade.dmupgrade", "does not follow"),
        ("dataminer 10.4.9.0-14794 Full Upgrade.dmupgrade", "does not follow"),
        ("DataMiner 10.4.9.0 Full Upgrade.dmupgrade", "has no build"),
        ("DataMiner 10.4-14794 Full Upgrade.dmupgrade", "invalid DataMiner version '10.4-14794'"),
        ("upgrade.dmupgrade", "does not follow"),
        ("", "does not follow"),
    ],
)
def test_parse_package_file_name_rejects_other_names(name: str, fragment: str) -> None:
    with pytest.raises(PackageRejected) as caught:
        parse_package_file_name(name)
    assert fragment in str(caught.value)
    assert str(caught.value).startswith(f"package {name!r} rejected: ")
