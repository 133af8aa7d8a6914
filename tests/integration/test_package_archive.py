"""Real .dmupgrade files: a built package inspects round-trip; hostile or broken ones are rejected."""

from __future__ import annotations

import hashlib
import io
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path

import pytest

from dma_upgrade.adapters.packages.archive import ArchiveLimits, build_package, inspect_package
from dma_upgrade.engine.errors import InvalidInput
from dma_upgrade.engine.packages import (
    CheckName,
    Comparison,
    PackageKind,
    PackageManifest,
    PackageRejected,
    PrerequisiteCheck,
)

CHECKS = (
    PrerequisiteCheck(name=CheckName.MINIMUM_VERSION, comparison=Comparison.AT_LEAST, required=("10.3.0.0",)),
    PrerequisiteCheck(name=CheckName.DOTNET, comparison=Comparison.INCLUDES, required=("dotnet-8",)),
    PrerequisiteCheck(name=CheckName.NATS, comparison=Comparison.IS_TRUE),
)
MANIFEST = PackageManifest(version="10.4.9.0", build=14794, kind=PackageKind.FULL,
                           description="April feature release", prerequisites=CHECKS)
NAME = "DataMiner 10.4.9.0-14794 Full Upgrade.dmupgrade"
ZEROS = 50 * 1024 * 1024


def entries_of(source: Path | bytes) -> dict[str, bytes]:
    """Every entry of a zip file (or zip bytes), by name, in order."""
    with zipfile.ZipFile(source if isinstance(source, Path) else io.BytesIO(source)) as archive:
        return {info.filename: archive.read(info) for info in archive.infolist()}


def zip_bytes(entries: Mapping[str, bytes], methods: Mapping[str, int] | None = None) -> bytes:
    """A zip of ``entries``, deflated unless ``methods`` names another compression for an entry."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data, compress_type=(methods or {}).get(name, zipfile.ZIP_DEFLATED))
    return buffer.getvalue()


@pytest.fixture
def package(tmp_path: Path) -> Path:
    return build_package(MANIFEST, tmp_path / "built")


@pytest.fixture
def outer(package: Path) -> dict[str, bytes]:
    return entries_of(package)


@pytest.fixture
def update(outer: dict[str, bytes]) -> dict[str, bytes]:
    return entries_of(outer["Update.zip"])


def write(tmp_path: Path, entries: dict[str, bytes], name: str = NAME) -> Path:
    path = tmp_path / name
    path.write_bytes(zip_bytes(entries))
    return path


def with_update(outer: dict[str, bytes], update: dict[str, bytes]) -> dict[str, bytes]:
    return {**outer, "Update.zip": zip_bytes(update)}


def rejected(path: Path, limits: ArchiveLimits = ArchiveLimits()) -> str:
    with pytest.raises(PackageRejected) as caught:
        inspect_package(path, limits)
    message = str(caught.value)
    assert message.startswith(f"package {path.name!r} rejected: ")
    assert "\n" not in message
    assert isinstance(caught.value, InvalidInput)
    return message


def test_a_built_package_inspects_round_trip(package: Path) -> None:
    inspected = inspect_package(package)
    assert package.name == NAME
    assert inspected.manifest == MANIFEST
    assert inspected.sha256 == hashlib.sha256(package.read_bytes()).hexdigest()
    assert inspected.size == package.stat().st_size
    assert inspected.entries == (
        "Description.txt", "Upgrade.exe", "manifest.json", "Update.zip",
        "Update.zip/UpdateContent.txt", "Update.zip/Prerequisites/minimum-version.json",
        "Update.zip/Prerequisites/dotnet.json", "Update.zip/Prerequisites/nats.json",
        "Update.zip/Files/Version.txt",
    )


def test_a_built_package_holds_the_documented_layout(outer: dict[str, bytes],
                                                      update: dict[str, bytes]) -> None:
    assert outer["Description.txt"] == b"DataMiner Upgrade (Full)\n"
    assert update["UpdateContent.txt"].decode().splitlines() == [
        "Lock", "Disable", "Kill", "IIS Stop", "Delete", "Update files", "Upgrade database", "Register",
        "Enable", "Unlock", "IIS Start", "Start",
    ]
    assert PrerequisiteCheck.model_validate_json(update["Prerequisites/nats.json"]) == CHECKS[2]


def test_building_twice_gives_the_same_bytes(tmp_path: Path, package: Path) -> None:
    again = build_package(MANIFEST, tmp_path / "again")
    assert again.read_bytes() == package.read_bytes()
    assert list((tmp_path / "again").iterdir()) == [again]


def test_a_package_without_prerequisites_inspects(tmp_path: Path) -> None:
    manifest = PackageManifest(version="10.5.5.0", build=15664, cu=0, kind=PackageKind.WEB)
    path = build_package(manifest, tmp_path)
    assert path.name == "DataMiner 10.5.5.0(CU0)-15664 Web Upgrade.dmupgrade"
    assert inspect_package(path).manifest == manifest


def test_a_renamed_package_still_inspects(tmp_path: Path, package: Path) -> None:
    renamed = package.rename(tmp_path / "upload.DMUPGRADE")
    assert inspect_package(renamed).manifest == MANIFEST


@pytest.mark.parametrize(("name", "shown"), [("package.zip", "'.zip'"), ("package", "'(none)'"),
                                             ("package.dmupgrade.txt", "'.txt'")])
def test_a_wrong_extension_is_rejected(tmp_path: Path, outer: dict[str, bytes], name: str,
                                       shown: str) -> None:
    assert f"extension {shown} is not .dmupgrade" in rejected(write(tmp_path, outer, name))


def test_a_text_file_renamed_dmupgrade_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / NAME
    path.write_text("DataMiner Upgrade (Full)\n")
    assert "not a zip archive" in rejected(path)


def test_a_missing_file_is_rejected(tmp_path: Path) -> None:
    assert "cannot be read" in rejected(tmp_path / NAME)


def test_a_file_over_the_upload_limit_is_rejected(package: Path) -> None:
    message = rejected(package, ArchiveLimits(max_upload_bytes=1000))
    assert f"file is {package.stat().st_size} bytes, over the upload limit of 1000 bytes" in message


@pytest.mark.parametrize("missing", ["manifest.json", "Description.txt", "Update.zip"])
def test_a_missing_top_level_entry_is_rejected(tmp_path: Path, outer: dict[str, bytes], missing: str) -> None:
    del outer[missing]
    assert f"missing {missing}" in rejected(write(tmp_path, outer))


@pytest.mark.parametrize(
    ("manifest", "fragment"),
    [
        (b"{not json", "manifest.json is not valid JSON"),
        (b'{"version": "10.4.9.0", "kind": "Full"}', "manifest.json: field 'build': Field required"),
        (b'{"version": "10.4", "build": 1, "kind": "Full"}', "field 'version': invalid DataMiner version"),
        (b'{"version": "10.4.9.0", "build": 1, "kind": "Half"}',
         "field 'kind': Input should be 'Full' or 'Web'"),
    ],
)
def test_an_invalid_manifest_is_rejected_naming_the_field(tmp_path: Path, outer: dict[str, bytes],
                                                          manifest: bytes, fragment: str) -> None:
    outer["manifest.json"] = manifest
    assert fragment in rejected(write(tmp_path, outer))


def test_a_manifest_over_the_metadata_limit_is_rejected(package: Path) -> None:
    message = rejected(package, ArchiveLimits(max_metadata_bytes=100))
    assert "entry 'manifest.json' is over 100 bytes" in message


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ("../evil", "escapes its folder"),
        ("Files/../../evil", "escapes its folder"),
        ("..\\evil", "escapes its folder"),
        ("Files\\..\\..\\evil", "escapes its folder"),
        ("/abs", "is an absolute path"),
        ("C:\\evil", "is an absolute path"),
        ("c:/evil", "is an absolute path"),
        ("\\\\server\\share\\evil", "is an absolute path"),
    ],
)
def test_an_entry_escaping_the_package_is_rejected(tmp_path: Path, outer: dict[str, bytes],
                                                   entry: str, problem: str) -> None:
    outer[entry] = b"payload"
    assert f"entry {entry!r} {problem}" in rejected(write(tmp_path, outer))


@pytest.mark.parametrize(
    ("entry", "problem"),
    [("../evil", "escapes its folder"), ("Files/..\\..\\evil", "escapes its folder"),
     ("/abs", "is an absolute path"), ("C:\\evil", "is an absolute path")],
)
def test_an_entry_escaping_update_zip_is_rejected(tmp_path: Path, outer: dict[str, bytes],
                                                  update: dict[str, bytes], entry: str, problem: str) -> None:
    update[entry] = b"payload"
    assert f"entry {entry!r} in Update.zip {problem}" in rejected(write(tmp_path, with_update(outer, update)))


def test_a_backslash_inside_a_folder_is_accepted(tmp_path: Path, outer: dict[str, bytes],
                                                 update: dict[str, bytes]) -> None:
    update["Files\\SLNet.dll"] = b"MZ"
    inspected = inspect_package(write(tmp_path, with_update(outer, update)))
    assert "Update.zip/Files\\SLNet.dll" in inspected.entries


def test_a_duplicate_entry_is_rejected(tmp_path: Path, package: Path) -> None:
    with warnings.catch_warnings(), zipfile.ZipFile(package, "a") as archive:
        warnings.simplefilter("ignore", UserWarning)
        archive.writestr("MANIFEST.JSON", b"{}")
    assert "entry 'MANIFEST.JSON' appears twice" in rejected(package)


def test_a_highly_compressed_entry_is_rejected_as_a_zip_bomb(tmp_path: Path,
                                                             outer: dict[str, bytes]) -> None:
    path = write(tmp_path, outer)
    with (zipfile.ZipFile(path, "a", zipfile.ZIP_DEFLATED) as archive,
          archive.open("Files/zeros.bin", "w") as sink):
        for _ in range(ZEROS // (1024 * 1024)):
            sink.write(bytes(1024 * 1024))
    message = rejected(path)
    assert "entry 'Files/zeros.bin' expands more than 200-fold" in message
    assert "zip bomb" in message


def test_the_ratio_limit_can_be_shrunk(package: Path) -> None:
    message = rejected(package, ArchiveLimits(max_ratio=1, ratio_min_bytes=1))
    assert "expands more than 1-fold" in message


def test_a_zip_bomb_inside_update_zip_is_rejected(tmp_path: Path, outer: dict[str, bytes],
                                                  update: dict[str, bytes]) -> None:
    update["Files/zeros.bin"] = bytes(ZEROS)
    message = rejected(write(tmp_path, with_update(outer, update)))
    assert "entry 'Files/zeros.bin' in Update.zip expands more than 200-fold" in message


def test_too_many_bytes_uncompressed_are_rejected(package: Path) -> None:
    message = rejected(package, ArchiveLimits(max_total_uncompressed=500))
    assert "declare more than 500 bytes uncompressed" in message


def test_update_zip_contents_count_against_the_total(package: Path, outer: dict[str, bytes]) -> None:
    outer_total = sum(len(data) for data in outer.values())
    message = rejected(package, ArchiveLimits(max_total_uncompressed=outer_total + 10))
    assert "entries in Update.zip declare more than" in message


def test_too_many_entries_are_rejected(package: Path) -> None:
    assert "too many entries: more than 3" in rejected(package, ArchiveLimits(max_entries=3))


def test_update_zip_entries_count_against_the_entry_limit(package: Path) -> None:
    assert "too many entries in Update.zip: more than 6" in rejected(package, ArchiveLimits(max_entries=6))


def test_an_encrypted_entry_is_rejected(tmp_path: Path, outer: dict[str, bytes]) -> None:
    path = write(tmp_path, outer)
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("Files/secret.bin", b"hidden")
        archive.getinfo("Files/secret.bin").flag_bits |= 0x1
    assert "entry 'Files/secret.bin' is encrypted" in rejected(path)


def test_a_header_understating_the_size_is_not_trusted(tmp_path: Path, outer: dict[str, bytes]) -> None:
    path = write(tmp_path, outer)
    with zipfile.ZipFile(path, "a", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("Files/big.bin", bytes(100_000))
        archive.getinfo("Files/big.bin").file_size = 10
    message = rejected(path)
    assert "entry 'Files/big.bin' is corrupt" in message


def test_update_zip_that_is_not_a_zip_is_rejected(tmp_path: Path, outer: dict[str, bytes]) -> None:
    outer["Update.zip"] = b"just text"
    assert "Update.zip is not a zip archive" in rejected(write(tmp_path, outer))


def test_update_zip_without_an_action_script_is_rejected(tmp_path: Path, outer: dict[str, bytes],
                                                         update: dict[str, bytes]) -> None:
    del update["UpdateContent.txt"]
    assert "Update.zip has no UpdateContent.txt" in rejected(write(tmp_path, with_update(outer, update)))


def test_a_check_missing_from_update_zip_is_rejected(tmp_path: Path, outer: dict[str, bytes],
                                                     update: dict[str, bytes]) -> None:
    del update["Prerequisites/dotnet.json"]
    message = rejected(write(tmp_path, with_update(outer, update)))
    assert ("manifest.json prerequisites disagree with Update.zip/Prerequisites: "
            "only in manifest.json: dotnet") in message


def test_a_check_missing_from_the_manifest_is_rejected(tmp_path: Path, outer: dict[str, bytes]) -> None:
    fewer = MANIFEST.model_copy(update={"prerequisites": CHECKS[:2]})
    outer["manifest.json"] = fewer.model_dump_json().encode()
    assert "only in Update.zip: nats" in rejected(write(tmp_path, outer))


def test_a_check_that_differs_is_rejected(tmp_path: Path, outer: dict[str, bytes],
                                          update: dict[str, bytes]) -> None:
    update["Prerequisites/minimum-version.json"] = CHECKS[0].model_copy(
        update={"required": ("10.4.0.0",)}).model_dump_json().encode()
    assert "different: minimum-version" in rejected(write(tmp_path, with_update(outer, update)))


def test_an_invalid_check_file_is_rejected_naming_it(tmp_path: Path, outer: dict[str, bytes],
                                                     update: dict[str, bytes]) -> None:
    update["Prerequisites/nats.json"] = b'{"name": "nats", "comparison": "includes"}'
    message = rejected(write(tmp_path, with_update(outer, update)))
    assert "Update.zip/Prerequisites/nats.json: check nats cannot compare includes" in message


def test_a_check_file_named_after_another_check_is_rejected(tmp_path: Path, outer: dict[str, bytes],
                                                            update: dict[str, bytes]) -> None:
    update["Prerequisites/ports.json"] = update.pop("Prerequisites/nats.json")
    message = rejected(write(tmp_path, with_update(outer, update)))
    assert "Update.zip/Prerequisites/ports.json holds check 'nats', not 'ports'" in message


def test_a_stray_file_in_prerequisites_is_rejected(tmp_path: Path, outer: dict[str, bytes],
                                                   update: dict[str, bytes]) -> None:
    update["Prerequisites/readme.txt"] = b"hello"
    message = rejected(write(tmp_path, with_update(outer, update)))
    assert "entry 'Prerequisites/readme.txt' in Update.zip is not a <check>.json file" in message
