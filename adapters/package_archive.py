"""Real ``.dmupgrade`` files: building them and inspecting untrusted ones.

Layout, as the package format describes it::

    Description.txt          "DataMiner Upgrade (Full)"
    Upgrade.exe              the upgrade executor (placeholder bytes here)
    manifest.json            the PackageManifest as JSON
    Update.zip               nested zip:
        UpdateContent.txt    the ordered action script, one phase per line
        Prerequisites/       one <check name>.json per prerequisite check
        Files/...            the files to install

``inspect_package`` never extracts anything to disk and never trusts a header alone: declared sizes
are checked before reading, and the bytes actually decompressed are counted against the same limits
while reading, outer entries and nested ``Update.zip`` entries on one budget.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import IO

from engine.errors import InvalidInput
from engine.packages import (
    INSTALL_PHASES,
    PackageManifest,
    PackageRejected,
    PrerequisiteCheck,
    check_from_json,
    manifest_from_json,
    package_file_name,
)

EXTENSION = ".dmupgrade"
DESCRIPTION = "Description.txt"
EXECUTOR = "Upgrade.exe"
MANIFEST = "manifest.json"
UPDATE_ZIP = "Update.zip"
UPDATE_CONTENT = "UpdateContent.txt"
PREREQUISITES = "Prerequisites/"

_CHUNK = 1024 * 1024
_SPOOL_IN_MEMORY = 16 * 1024 * 1024
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)
_DRIVE = re.compile(r"[A-Za-z]:")


@dataclass(frozen=True)
class ArchiveLimits:
    """What ``inspect_package`` tolerates before it calls a package hostile.

    ``max_total_uncompressed`` and ``max_entries`` count the archive and its ``Update.zip`` together.
    The ratio limit applies to entries of at least ``ratio_min_bytes`` uncompressed: tiny files
    compress wildly and are harmless. ``max_metadata_bytes`` caps manifest.json and each check file.
    """

    max_upload_bytes: int = 2 * 1024**3
    max_total_uncompressed: int = 8 * 1024**3
    max_ratio: int = 200
    ratio_min_bytes: int = 1024 * 1024
    max_entries: int = 10_000
    max_metadata_bytes: int = 1024 * 1024


@dataclass(frozen=True)
class InspectedPackage:
    """A package that passed inspection, with its manifest and fingerprint.

    ``entries`` lists the archive's entries in order, then those of ``Update.zip`` prefixed
    ``Update.zip/``.
    """

    manifest: PackageManifest
    sha256: str
    size: int
    entries: tuple[str, ...]


def _zip_info(name: str, compress_type: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=_FIXED_TIME)
    info.compress_type = compress_type
    info.external_attr = 0o644 << 16
    return info


def _update_zip(manifest: PackageManifest) -> bytes:
    buffer = BytesIO()
    with zipfile.ZipFile(buffer, "w") as update:
        script = "".join(f"{phase}\n" for phase in INSTALL_PHASES)
        update.writestr(_zip_info(UPDATE_CONTENT, zipfile.ZIP_DEFLATED), script)
        for check in manifest.prerequisites:
            update.writestr(_zip_info(f"{PREREQUISITES}{check.name}.json", zipfile.ZIP_DEFLATED),
                            check.model_dump_json(indent=2))
        update.writestr(_zip_info("Files/Version.txt", zipfile.ZIP_DEFLATED),
                        f"{manifest.dataminer_version}\n")
    return buffer.getvalue()


def build_package(manifest: PackageManifest, directory: Path) -> Path:
    """Write the package of ``manifest`` into ``directory`` under its canonical file name.

    The same manifest always gives the same bytes (fixed entry times). The file appears atomically.
    """
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / package_file_name(manifest)
    partial = target.with_name(target.name + ".part")
    with zipfile.ZipFile(partial, "w") as package:
        package.writestr(_zip_info(DESCRIPTION, zipfile.ZIP_DEFLATED),
                         f"DataMiner Upgrade ({manifest.kind})\n")
        package.writestr(_zip_info(EXECUTOR, zipfile.ZIP_DEFLATED),
                         f"placeholder upgrade executor for DataMiner {manifest.dataminer_version}\n")
        package.writestr(_zip_info(MANIFEST, zipfile.ZIP_DEFLATED), manifest.model_dump_json(indent=2))
        package.writestr(_zip_info(UPDATE_ZIP, zipfile.ZIP_STORED), _update_zip(manifest))
    os.replace(partial, target)
    return target


def _name_problem(name: str) -> str | None:
    """Why an entry name is unsafe to extract, or None. Backslashes count as separators."""
    unified = name.replace("\\", "/")
    if not unified.strip("/"):
        return "has no name"
    if "\x00" in unified:
        return "has a NUL character in its name"
    if unified.startswith("/") or _DRIVE.match(unified):
        return "is an absolute path"
    if ".." in unified.split("/"):
        return "escapes its folder"
    return None


class _Inspection:
    """One run of ``inspect_package``: the limits, the shared budget, and how to reject."""

    def __init__(self, path: Path, limits: ArchiveLimits) -> None:
        self.path = path
        self.limits = limits
        self.entries = 0
        self.declared = 0
        self.consumed = 0

    def reject(self, reason: str) -> PackageRejected:
        return PackageRejected(self.path.name, reason)

    def fingerprint(self) -> tuple[str, int]:
        """SHA-256 and size of the file, read in chunks; refuses a file over the upload limit."""
        limit = self.limits.max_upload_bytes
        try:
            on_disk = self.path.stat().st_size
            if on_disk > limit:
                raise self.reject(f"file is {on_disk} bytes, over the upload limit of {limit} bytes")
            digest = hashlib.sha256()
            size = 0
            with self.path.open("rb") as stream:
                while chunk := stream.read(_CHUNK):
                    size += len(chunk)
                    if size > limit:
                        raise self.reject(f"file is over the upload limit of {limit} bytes")
                    digest.update(chunk)
        except OSError as error:
            raise self.reject(f"file cannot be read: {error.strerror or error}") from None
        return digest.hexdigest(), size

    def check_headers(self, archive: zipfile.ZipFile, where: str) -> list[zipfile.ZipInfo]:
        """Check every entry's name, flags and declared sizes before anything is decompressed."""
        infos = archive.infolist()
        self.entries += len(infos)
        if self.entries > self.limits.max_entries:
            raise self.reject(f"too many entries{where}: more than {self.limits.max_entries}")
        seen: set[str] = set()
        for info in infos:
            name = info.orig_filename
            problem = _name_problem(name)
            if problem is not None:
                raise self.reject(f"entry {name!r}{where} {problem}")
            key = name.replace("\\", "/").casefold()
            if key in seen:
                raise self.reject(f"entry {name!r}{where} appears twice")
            seen.add(key)
            if info.flag_bits & 0x1:
                raise self.reject(f"entry {name!r}{where} is encrypted")
            self.check_ratio(info, info.file_size, where)
            self.declared += info.file_size
            if self.declared > self.limits.max_total_uncompressed:
                raise self.reject(f"entries{where} declare more than "
                                  f"{self.limits.max_total_uncompressed} bytes uncompressed in total")
        return infos

    def check_ratio(self, info: zipfile.ZipInfo, size: int, where: str) -> None:
        if size >= self.limits.ratio_min_bytes and size > self.limits.max_ratio * max(info.compress_size, 1):
            raise self.reject(f"entry {info.orig_filename!r}{where} expands more than "
                              f"{self.limits.max_ratio}-fold ({info.compress_size} to {size} bytes): "
                              f"a zip bomb")

    def read(self, archive: zipfile.ZipFile, info: zipfile.ZipInfo, where: str,
             sink: IO[bytes] | None) -> None:
        """Decompress one entry into ``sink`` (or nowhere), counting the bytes actually produced."""
        produced = 0
        try:
            with archive.open(info) as entry:
                while chunk := entry.read(_CHUNK):
                    produced += len(chunk)
                    self.consumed += len(chunk)
                    self.check_ratio(info, produced, where)
                    if produced > info.file_size or self.consumed > self.limits.max_total_uncompressed:
                        raise self.reject(f"entry {info.orig_filename!r}{where} produces more bytes "
                                          f"than declared or allowed")
                    if sink is not None:
                        sink.write(chunk)
        except NotImplementedError as error:
            raise self.reject(f"entry {info.orig_filename!r}{where} cannot be read: {error}") from None
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as error:
            raise self.reject(f"entry {info.orig_filename!r}{where} is corrupt: {error}") from None

    def read_metadata(self, archive: zipfile.ZipFile, info: zipfile.ZipInfo, where: str) -> bytes:
        """Read a small JSON entry, refusing one over ``max_metadata_bytes``."""
        if info.file_size > self.limits.max_metadata_bytes:
            raise self.reject(f"entry {info.orig_filename!r}{where} is over "
                              f"{self.limits.max_metadata_bytes} bytes")
        buffer = BytesIO()
        self.read(archive, info, where, buffer)
        return buffer.getvalue()

    def inspect_update(self, update: IO[bytes]) -> tuple[list[str], list[PrerequisiteCheck]]:
        """Check the nested Update.zip; its entry names and the checks in its Prerequisites folder."""
        where = f" in {UPDATE_ZIP}"
        try:
            archive = zipfile.ZipFile(update)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as error:
            raise self.reject(f"{UPDATE_ZIP} is not a zip archive: {error}") from None
        with archive:
            infos = self.check_headers(archive, where)
            names = [info.orig_filename for info in infos]
            if UPDATE_CONTENT not in names:
                raise self.reject(f"{UPDATE_ZIP} has no {UPDATE_CONTENT}")
            checks: list[PrerequisiteCheck] = []
            for info in infos:
                name = info.orig_filename
                if not name.startswith(PREREQUISITES) or info.is_dir():
                    self.read(archive, info, where, None)
                    continue
                stem = name.removeprefix(PREREQUISITES).removesuffix(".json")
                if "/" in stem or not name.endswith(".json"):
                    raise self.reject(f"entry {name!r}{where} is not a <check>.json file")
                try:
                    check = check_from_json(self.read_metadata(archive, info, where),
                                            f"{UPDATE_ZIP}/{name}")
                except InvalidInput as error:
                    raise self.reject(str(error)) from None
                if check.name != stem:
                    raise self.reject(f"{UPDATE_ZIP}/{name} holds check {str(check.name)!r}, "
                                      f"not {stem!r}")
                checks.append(check)
        return names, checks

    def inspect(self) -> InspectedPackage:
        if self.path.suffix.lower() != EXTENSION:
            raise self.reject(f"extension {self.path.suffix or '(none)'!r} is not {EXTENSION}")
        sha256, size = self.fingerprint()
        try:
            archive = zipfile.ZipFile(self.path)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as error:
            raise self.reject(f"not a zip archive: {error}") from None
        with archive, tempfile.SpooledTemporaryFile(_SPOOL_IN_MEMORY) as update:
            infos = self.check_headers(archive, "")
            by_name = {info.orig_filename: info for info in infos}
            for required in (MANIFEST, DESCRIPTION, UPDATE_ZIP):
                if required not in by_name:
                    raise self.reject(f"missing {required}")
            raw_manifest = self.read_metadata(archive, by_name[MANIFEST], "")
            for info in infos:
                if info.orig_filename != MANIFEST:
                    self.read(archive, info, "", update if info.orig_filename == UPDATE_ZIP else None)
            try:
                manifest = manifest_from_json(raw_manifest, MANIFEST)
            except InvalidInput as error:
                raise self.reject(str(error)) from None
            update.seek(0)
            update_names, checks = self.inspect_update(update)
        self.compare(manifest, checks)
        entries = [info.orig_filename for info in infos] + [f"{UPDATE_ZIP}/{name}" for name in update_names]
        return InspectedPackage(manifest=manifest, sha256=sha256, size=size, entries=tuple(entries))

    def compare(self, manifest: PackageManifest, stored: list[PrerequisiteCheck]) -> None:
        """Refuse a manifest whose prerequisites are not exactly those stored in Update.zip."""
        declared = {check.name: check for check in manifest.prerequisites}
        found = {check.name: check for check in stored}
        differences = [
            (label, sorted(names))
            for label, names in (
                (f"only in {MANIFEST}", declared.keys() - found.keys()),
                (f"only in {UPDATE_ZIP}", found.keys() - declared.keys()),
                ("different", {name for name in declared.keys() & found.keys()
                               if declared[name] != found[name]}),
            )
            if names
        ]
        if differences:
            detail = "; ".join(f"{label}: {', '.join(names)}" for label, names in differences)
            raise self.reject(f"{MANIFEST} prerequisites disagree with {UPDATE_ZIP}/Prerequisites: "
                              f"{detail}")


def inspect_package(path: Path, limits: ArchiveLimits = ArchiveLimits()) -> InspectedPackage:
    """Validate an untrusted ``.dmupgrade`` and return its manifest, SHA-256, size and entries.

    Raises ``PackageRejected`` (an ``InvalidInput``) with a one-line reason for: a wrong extension,
    a file over the upload limit, a file that is not a zip, a missing or invalid manifest.json, a
    missing Description.txt or Update.zip (or UpdateContent.txt inside it), an entry whose name
    escapes its folder or is absolute (in either archive), duplicate or encrypted entries, zip bombs
    (too many entries, too many bytes, too high a compression ratio), corrupt entries, and a manifest
    whose prerequisites disagree with ``Update.zip/Prerequisites``.
    """
    return _Inspection(path, limits).inspect()
