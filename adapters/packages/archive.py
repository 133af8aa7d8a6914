"""Real ``.dmupgrade`` files: building them and inspecting untrusted ones.

Layout, as the package format describes it::

    Description.txt          "DataMiner Upgrade (Full)"
    Upgrade.exe              the upgrade executor (placeholder bytes here)
    manifest.json            the PackageManifest as JSON
    Update.zip               nested zip:
        UpdateContent.txt    the ordered action script, one phase per line
        Prerequisites/       one <check name>.json per prerequisite check
        Files/...            the files to install

``inspect_package`` reads untrusted archives itself, never through ``zipfile``, and never extracts to disk
(only ``Update.zip`` goes to a temporary file to be read in turn). Every header is checked against the
limits before anything is expanded, and then reality is held to the headers while it streams:

- an entry's compressed bytes must lie in the file between its local header and the next entry (no
  overlaps, nothing past the directory), and the deflate stream must end exactly where they end;
- an entry that expands one byte past the size its header declares is refused at that byte, one that
  expands to fewer bytes or fails its CRC-32 at its end;
- only stored and deflate entries are read; deflate output comes ``_CHUNK`` bytes at a time.

So the declared sizes the limits judge (per entry, in total, and their ratio) are sizes actually consumed
and produced, and no header can make the reader allocate more than ``MEMORY_BOUND``.
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from io import BytesIO
from pathlib import Path
from typing import IO

from dma_upgrade.engine.errors import Conflict, InvalidInput
from dma_upgrade.engine.packages import (
    INSTALL_PHASES,
    PackageManifest,
    PackageRejected,
    PrerequisiteCheck,
    check_from_json,
    check_identity,
    manifest_from_json,
    package_description,
    package_file_name,
)

EXTENSION = ".dmupgrade"
DESCRIPTION = "Description.txt"
EXECUTOR = "Upgrade.exe"
MANIFEST = "manifest.json"
UPDATE_ZIP = "Update.zip"
UPDATE_CONTENT = "UpdateContent.txt"
PREREQUISITES = "Prerequisites/"

MEMORY_BOUND = 64 * 1024**2
"""The most memory inspecting one package allocates (as ``tracemalloc`` counts it) with the default limits,
whatever the archive claims. Nothing is sized by a header before a limit has judged it: what is held is a
few ``_CHUNK`` buffers, ``max_entries`` names of at most ``max_name_bytes`` (with their case-folded twins
while one archive's directory is checked), and one JSON file of at most ``max_metadata_bytes`` with its
validation errors. The worst case built by the tests (10,000 names of 1,024 cp437 bytes and a manifest
with 32,000 invalid fields) peaks near 53 MB."""

_CHUNK = 1024 * 1024
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)
_DRIVE = re.compile(r"[A-Za-z]:")

_LOCAL = struct.Struct("<4s5H3L2H")
_CENTRAL = struct.Struct("<4s6H3L5H2L")
_END = struct.Struct("<4s4H2LH")
_LOCATOR = struct.Struct("<4sLQL")
_END64 = struct.Struct("<4sQ2H2L4Q")
_LOCAL_SIGNATURE = b"PK\x03\x04"
_CENTRAL_SIGNATURE = b"PK\x01\x02"
_END_SIGNATURE = b"PK\x05\x06"
_LOCATOR_SIGNATURE = b"PK\x06\x07"
_END64_SIGNATURE = b"PK\x06\x06"
_ZIP64_EXTRA = 0x0001
_WIDE = 0xFFFFFFFF
_ENCRYPTED = 0x0001 | 0x0040
_DESCRIPTOR = 0x0008
_UTF8 = 0x0800
_STORED, _DEFLATED = 0, 8
_METHODS = {9: "deflate64", 12: "bzip2", 14: "lzma", 93: "zstandard", 95: "xz", 98: "ppmd", 99: "aes"}


@dataclass(frozen=True)
class ArchiveLimits:
    """What ``inspect_package`` tolerates before it calls a package hostile.

    ``max_entries`` and ``max_total_uncompressed`` count the archive and its ``Update.zip`` together;
    ``max_entry_uncompressed`` caps each entry. The ratio limit applies to entries of at least
    ``ratio_min_bytes`` uncompressed: tiny files compress wildly and are harmless. ``max_metadata_bytes``
    caps manifest.json and each check file, ``max_name_bytes`` each entry name. The sizes judged are
    those the headers declare, and the stream is held to them: no entry consumes a byte outside its own
    place in the file, nor produces a byte past its declared size, so they are real sizes.
    """

    max_upload_bytes: int = 2 * 1024**3
    max_total_uncompressed: int = 8 * 1024**3
    max_entry_uncompressed: int = 4 * 1024**3
    max_ratio: int = 200
    ratio_min_bytes: int = 1024 * 1024
    max_entries: int = 10_000
    max_name_bytes: int = 1024
    max_metadata_bytes: int = 64 * 1024


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


def build_package(manifest: PackageManifest, directory: Path, *, overwrite: bool = True) -> Path:
    """Write the package of ``manifest`` into ``directory`` under its canonical file name.

    The same manifest always gives the same bytes (fixed entry times). The file appears atomically; without
    ``overwrite``, a file already there is kept and ``Conflict`` raised (checked when the file appears).
    """
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / package_file_name(manifest)
    exists = Conflict(f"{target} exists already; pass --force to overwrite it")
    if not overwrite and target.exists():
        raise exists
    partial = target.with_name(target.name + ".part")
    with zipfile.ZipFile(partial, "w") as package:
        package.writestr(_zip_info(DESCRIPTION, zipfile.ZIP_DEFLATED), f"{package_description(manifest.kind)}\n")
        package.writestr(_zip_info(EXECUTOR, zipfile.ZIP_DEFLATED),
                         f"placeholder upgrade executor for DataMiner {manifest.dataminer_version}\n")
        package.writestr(_zip_info(MANIFEST, zipfile.ZIP_DEFLATED), manifest.model_dump_json(indent=2))
        package.writestr(_zip_info(UPDATE_ZIP, zipfile.ZIP_STORED), _update_zip(manifest))
    if overwrite:
        os.replace(partial, target)
        return target
    try:
        os.link(partial, target)
    except FileExistsError:
        raise exists from None
    finally:
        partial.unlink()
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


class _Broken(Exception):
    """A structural lie or break in an archive; the inspection names the archive or entry it is in."""


@dataclass(frozen=True)
class _Source:
    """One zip archive being read: its file, its size, and how messages name it and its entries."""

    file: IO[bytes]
    size: int
    label: str
    where: str


@dataclass(frozen=True)
class _Entry:
    """An entry as the central directory declares it (zip64 sizes resolved); ``end`` is where the next
    entry, or the central directory, begins: its local header and compressed bytes must fit before it."""

    name: str
    name_size: int
    flags: int
    method: int
    crc: int
    compressed_size: int
    size: int
    offset: int
    end: int = 0


def _decoded(name: bytes, flags: int) -> str:
    """An entry name as its flags say it is encoded: UTF-8, or else cp437."""
    return name.decode("utf-8" if flags & _UTF8 else "cp437")


def _read(file: IO[bytes], at: int, size: int, bound: int, what: str) -> bytes:
    """Exactly ``size`` bytes of ``file`` from ``at``, all of them before ``bound``."""
    if at < 0 or at + size > bound:
        raise _Broken(f"{what} runs past its place")
    file.seek(at)
    data = file.read(size)
    if len(data) != size:
        raise _Broken(f"{what} is truncated")
    return data


def _zip64(extra: bytes, values: tuple[int, ...]) -> tuple[int, ...]:
    """``values`` with each 0xFFFFFFFF replaced, in order, by the next value of the zip64 extra field."""
    wide = [i for i, value in enumerate(values) if value == _WIDE]
    if not wide:
        return values
    at = 0
    while at + 4 <= len(extra):
        kind, length = struct.unpack_from("<2H", extra, at)
        field = extra[at + 4:at + 4 + length]
        if kind == _ZIP64_EXTRA and len(field) >= 8 * len(wide):
            resolved = list(values)
            for index, value in zip(wide, struct.unpack_from(f"<{len(wide)}Q", field), strict=True):
                resolved[index] = value
            return tuple(resolved)
        at += 4 + length
    raise _Broken("a size marked zip64 has no zip64 field")


def _directory_place(source: _Source) -> tuple[int, int, int]:
    """The entry count, and where the central directory begins and must end, from the end records."""
    tail_at = max(0, source.size - _END.size - 0xFFFF)
    tail = _read(source.file, tail_at, source.size - tail_at, source.size, "the end record")
    at = len(tail)
    while True:
        at = tail.rfind(_END_SIGNATURE, 0, at)
        if at < 0:
            raise _Broken("no end-of-central-directory record")
        if at + _END.size <= len(tail):
            _, disk, first_disk, _, count, size, start, comment = _END.unpack_from(tail, at)
            if at + _END.size + comment == len(tail):
                break
    end = tail_at + at
    if end >= _LOCATOR.size:
        signature, _, record_at, _ = _LOCATOR.unpack(
            _read(source.file, end - _LOCATOR.size, _LOCATOR.size, end, "the zip64 locator"))
        if signature == _LOCATOR_SIGNATURE:
            end -= _LOCATOR.size
            record = _read(source.file, record_at, _END64.size, end, "the zip64 end record")
            signature, _, _, _, disk, first_disk, _, count, size, start = _END64.unpack(record)
            if signature != _END64_SIGNATURE:
                raise _Broken("its zip64 end record is missing")
            end = record_at
    if disk or first_disk:
        raise _Broken("it spans several disks")
    if start + size != end:
        raise _Broken("its central directory is not where its end record says")
    return count, start, end


def _placed(entries: list[_Entry], directory: int) -> list[_Entry]:
    """``entries`` with their ``end``; refuses two entries at one offset, or one inside the directory."""
    offsets = sorted(entry.offset for entry in entries)
    ends = dict(zip(offsets, [*offsets[1:], directory], strict=True))
    if len(ends) < len(entries):
        raise _Broken("two entries start at the same place")
    if offsets and offsets[-1] >= directory:
        raise _Broken("an entry starts inside the central directory")
    return [replace(entry, end=ends[entry.offset]) for entry in entries]


def _data_start(file: IO[bytes], entry: _Entry) -> int:
    """Where the entry's compressed bytes begin, once its local header agrees with the central directory."""
    header = _read(file, entry.offset, _LOCAL.size, entry.end, "its local header")
    signature, _, flags, method, _, _, crc, compressed, size, name_size, extra_size = _LOCAL.unpack(header)
    at = entry.offset + _LOCAL.size
    disagrees = _Broken("its local header disagrees with the central directory")
    if signature != _LOCAL_SIGNATURE or method != entry.method or name_size != entry.name_size:
        raise disagrees
    try:
        if _decoded(_read(file, at, name_size, entry.end, "its local header"), entry.flags) != entry.name:
            raise disagrees
    except UnicodeDecodeError:
        raise disagrees from None
    extra = _read(file, at + name_size, extra_size, entry.end, "its local header")
    declared = (crc, *_zip64(extra, (size, compressed)))
    if not flags & _DESCRIPTOR and declared != (entry.crc, entry.size, entry.compressed_size):
        raise disagrees
    start: int = at + name_size + extra_size
    if start + entry.compressed_size > entry.end:
        raise _Broken(f"its {entry.compressed_size} compressed bytes run into the next entry")
    return start


def _expanded(file: IO[bytes], entry: _Entry, start: int) -> Iterator[bytes]:
    """The entry's bytes, at most ``_CHUNK`` at a time, from exactly its compressed bytes at ``start``."""
    file.seek(start)
    left = entry.compressed_size
    inflater = zlib.decompressobj(-zlib.MAX_WBITS) if entry.method == _DEFLATED else None
    while left:
        data = file.read(min(_CHUNK, left))
        if not data:
            raise _Broken("the archive ends inside its compressed bytes")
        left -= len(data)
        if inflater is None:
            yield data
            continue
        while True:
            chunk = inflater.decompress(data, _CHUNK)
            data = inflater.unconsumed_tail
            if chunk:
                yield chunk
            if inflater.eof or (not data and len(chunk) < _CHUNK):
                break
        if inflater.eof and (left or inflater.unused_data):
            raise _Broken("its compressed data ends before its declared compressed size")
    if inflater is not None and not inflater.eof:
        raise _Broken("its compressed data is truncated")


class _Inspection:
    """One run of ``inspect_package``: the limits, the budget both archives share, and how to reject."""

    def __init__(self, path: Path, limits: ArchiveLimits) -> None:
        self.path = path
        self.limits = limits
        self.entries = 0
        self.declared = 0

    def reject(self, reason: str) -> PackageRejected:
        return PackageRejected(self.path.name, reason)

    def fingerprint(self, file: IO[bytes]) -> tuple[str, int]:
        """SHA-256 and size of the file, read in chunks; refuses a file over the upload limit."""
        limit = self.limits.max_upload_bytes
        on_disk = os.fstat(file.fileno()).st_size
        if on_disk > limit:
            raise self.reject(f"file is {on_disk} bytes, over the upload limit of {limit} bytes")
        digest = hashlib.sha256()
        size = 0
        while chunk := file.read(_CHUNK):
            size += len(chunk)
            if size > limit:
                raise self.reject(f"file is over the upload limit of {limit} bytes")
            digest.update(chunk)
        return digest.hexdigest(), size

    def directory(self, source: _Source) -> list[_Entry]:
        """Every entry of the central directory, each checked (``check``) before anything is expanded."""
        try:
            count, start, end = _directory_place(source)
            if self.entries + count > self.limits.max_entries:
                raise self.reject(f"too many entries{source.where}: more than {self.limits.max_entries}")
            self.entries += count
            entries: list[_Entry] = []
            at = start
            for _ in range(count):
                entry, at = self.central_entry(source, at, end)
                entries.append(entry)
            if at != end:
                raise _Broken("its central directory holds more than its end record counts")
            entries = _placed(entries, start)
        except _Broken as error:
            raise self.reject(f"{source.label} is not a zip archive: {error}") from None
        seen: set[str] = set()
        for entry in entries:
            self.check(source, entry, seen)
        return entries

    def central_entry(self, source: _Source, at: int, end: int) -> tuple[_Entry, int]:
        """The central directory entry at ``at``, and where the next one begins."""
        what = "its central directory"
        (signature, _, _, flags, method, _, _, crc, compressed, size, name_size, extra_size, comment_size,
         _, _, _, offset) = _CENTRAL.unpack(_read(source.file, at, _CENTRAL.size, end, what))
        if signature != _CENTRAL_SIGNATURE:
            raise _Broken(f"{what} has a bad entry at byte {at}")
        if name_size > self.limits.max_name_bytes:
            raise self.reject(f"an entry{source.where} has a name of {name_size} bytes, over the limit of "
                              f"{self.limits.max_name_bytes}")
        name = _read(source.file, at + _CENTRAL.size, name_size, end, what)
        extra = _read(source.file, at + _CENTRAL.size + name_size, extra_size, end, what)
        try:
            text = _decoded(name, flags)
        except UnicodeDecodeError:
            raise self.reject(f"an entry name{source.where} is marked UTF-8 but is not") from None
        size, compressed, offset = _zip64(extra, (size, compressed, offset))
        entry = _Entry(name=text, name_size=name_size, flags=flags, method=method, crc=crc,
                       compressed_size=compressed, size=size, offset=offset)
        return entry, at + _CENTRAL.size + name_size + extra_size + comment_size

    def check(self, source: _Source, entry: _Entry, seen: set[str]) -> None:
        """Refuse an entry by its header alone: name, duplicate, encryption, method, place and sizes."""
        name, where, limits = entry.name, source.where, self.limits
        problem = _name_problem(name)
        if problem is not None:
            raise self.reject(f"entry {name!r}{where} {problem}")
        key = name.replace("\\", "/").casefold()
        if key in seen:
            raise self.reject(f"entry {name!r}{where} appears twice")
        seen.add(key)
        if entry.flags & _ENCRYPTED:
            raise self.reject(f"entry {name!r}{where} is encrypted")
        if entry.method not in (_STORED, _DEFLATED):
            method = f"method {entry.method}" + (f" ({_METHODS[entry.method]})" if entry.method in _METHODS else "")
            raise self.reject(f"entry {name!r}{where} is compressed with {method}: only stored and deflate "
                              f"entries are accepted")
        if entry.method == _STORED and entry.compressed_size != entry.size:
            raise self.reject(f"entry {name!r}{where} is corrupt: stored, yet {entry.compressed_size} bytes "
                              f"compressed and {entry.size} expanded")
        if entry.offset + _LOCAL.size + entry.name_size + entry.compressed_size > entry.end:
            raise self.reject(f"entry {name!r}{where} is corrupt: its {entry.compressed_size} compressed bytes "
                              f"do not fit before the next entry")
        if entry.size > limits.max_entry_uncompressed:
            raise self.reject(f"entry {name!r}{where} declares {entry.size} bytes uncompressed, over the limit "
                              f"of {limits.max_entry_uncompressed} per entry")
        if entry.size >= limits.ratio_min_bytes and entry.size > limits.max_ratio * max(entry.compressed_size, 1):
            raise self.reject(f"entry {name!r}{where} expands more than {limits.max_ratio}-fold "
                              f"({entry.compressed_size} to {entry.size} bytes): a zip bomb")
        self.declared += entry.size
        if self.declared > limits.max_total_uncompressed:
            raise self.reject(f"entries{where} declare more than {limits.max_total_uncompressed} bytes "
                              f"uncompressed in total")

    def expand(self, source: _Source, entry: _Entry, sink: IO[bytes] | None) -> None:
        """Stream the entry into ``sink`` (or nowhere), holding it to its header byte by byte."""
        produced = crc = 0
        try:
            for chunk in _expanded(source.file, entry, _data_start(source.file, entry)):
                produced += len(chunk)
                if produced > entry.size:
                    raise _Broken(f"it expands past the {entry.size} bytes its header declares")
                crc = zlib.crc32(chunk, crc)
                if sink is not None:
                    sink.write(chunk)
            if produced != entry.size:
                raise _Broken(f"it expands to {produced} bytes, not the {entry.size} its header declares")
            if crc != entry.crc:
                raise _Broken("it fails its CRC-32 check")
        except (_Broken, zlib.error) as error:
            raise self.reject(f"entry {entry.name!r}{source.where} is corrupt: {error}") from None

    def read_metadata(self, source: _Source, entry: _Entry) -> bytes:
        """Read a small JSON entry, refusing one over ``max_metadata_bytes``."""
        if entry.size > self.limits.max_metadata_bytes:
            raise self.reject(f"entry {entry.name!r}{source.where} is over "
                              f"{self.limits.max_metadata_bytes} bytes")
        buffer = BytesIO()
        self.expand(source, entry, buffer)
        return buffer.getvalue()

    def text(self, raw: bytes, name: str) -> str:
        """A small entry's bytes as UTF-8 text (a byte-order mark allowed)."""
        try:
            return raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise self.reject(f"{name} is not UTF-8 text") from None

    def inspect_update(self, update: _Source) -> tuple[list[str], list[PrerequisiteCheck]]:
        """Check the nested Update.zip; its entry names and the checks in its Prerequisites folder."""
        entries = self.directory(update)
        names = [entry.name for entry in entries]
        if UPDATE_CONTENT not in names:
            raise self.reject(f"{UPDATE_ZIP} has no {UPDATE_CONTENT}")
        checks: list[PrerequisiteCheck] = []
        for entry in entries:
            name = entry.name
            if not name.startswith(PREREQUISITES) or name.endswith("/"):
                self.expand(update, entry, None)
                continue
            stem = name.removeprefix(PREREQUISITES).removesuffix(".json")
            if "/" in stem or not name.endswith(".json"):
                raise self.reject(f"entry {name!r}{update.where} is not a <check>.json file")
            raw = self.read_metadata(update, entry)
            try:
                check = check_from_json(raw, f"{UPDATE_ZIP}/{name}")
            except InvalidInput as error:
                raise self.reject(str(error)) from None
            if check.name != stem:
                raise self.reject(f"{UPDATE_ZIP}/{name} holds check {str(check.name)!r}, not {stem!r}")
            checks.append(check)
        return names, checks

    def inspect(self) -> InspectedPackage:
        if self.path.suffix.lower() != EXTENSION:
            raise self.reject(f"extension {self.path.suffix or '(none)'!r} is not {EXTENSION}")
        try:
            file = self.path.open("rb")
        except OSError as error:
            raise self.reject(f"file cannot be read: {error.strerror or error}") from None
        with file, tempfile.TemporaryFile() as update:
            sha256, size = self.fingerprint(file)
            source = _Source(file, size, "the file", "")
            entries = self.directory(source)
            by_name = {entry.name: entry for entry in entries}
            for required in (MANIFEST, DESCRIPTION, UPDATE_ZIP):
                if required not in by_name:
                    raise self.reject(f"missing {required}")
            raw_manifest = self.read_metadata(source, by_name[MANIFEST])
            raw_description = self.read_metadata(source, by_name[DESCRIPTION])
            for entry in entries:
                if entry.name not in (MANIFEST, DESCRIPTION):
                    self.expand(source, entry, update if entry.name == UPDATE_ZIP else None)
            try:
                manifest = manifest_from_json(raw_manifest, MANIFEST)
            except InvalidInput as error:
                raise self.reject(str(error)) from None
            check_identity(self.path.name, self.text(raw_description, DESCRIPTION), manifest)
            update_names, checks = self.inspect_update(
                _Source(update, by_name[UPDATE_ZIP].size, UPDATE_ZIP, f" in {UPDATE_ZIP}"))
        self.compare(manifest, checks)
        entries_named = [entry.name for entry in entries] + [f"{UPDATE_ZIP}/{name}" for name in update_names]
        return InspectedPackage(manifest=manifest, sha256=sha256, size=size, entries=tuple(entries_named))

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
    escapes its folder or is absolute (in either archive), duplicate or encrypted entries, entries neither
    stored nor deflated, zip bombs (too many entries, too long names, too many bytes per entry or in all,
    too high a compression ratio), corrupt entries (headers that lie about sizes, place or CRC), a
    manifest whose prerequisites disagree with ``Update.zip/Prerequisites``, and a package that is not the
    DataMiner server upgrade it says (``check_identity``: Description.txt, manifest kind, a file name of the
    DataMiner form).
    """
    return _Inspection(path, limits).inspect()
