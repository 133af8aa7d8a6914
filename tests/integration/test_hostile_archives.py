"""Packages that lie: compression methods that expand in one call, headers that lie about sizes or places,
bombs nested in Update.zip, manifests nested too deep, and concurrent uploads of one package.

Every hostile archive is built here, by ``zipfile`` and then patched (``lie``), or by hand (``raw_zip``).
"""

from __future__ import annotations

import bz2
import io
import random
import struct
import threading
import tracemalloc
import zipfile
import zlib
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from dma_upgrade.adapters.packages.archive import MEMORY_BOUND, ArchiveLimits, build_package, inspect_package
from dma_upgrade.adapters.packages.store import FilePackageStore
from dma_upgrade.adapters.packages.upload import upload_package
from dma_upgrade.engine.errors import Conflict, InvalidInput
from dma_upgrade.engine.packages import PackageRejected, check_from_json, manifest_from_json
from dma_upgrade.engine.records import PackageRecord
from tests.integration.rollout_harness import ACTOR, RolloutHarness
from tests.integration.test_package_archive import MANIFEST, NAME, entries_of, rejected, zip_bytes

BOMB = 128 * 1024**2
"""What the compression bombs expand to: twice ``MEMORY_BOUND``."""
SMALL_ZEROS = 8 * 1024**2
NOISE = random.Random(14).randbytes(20_000)
"""Bytes deflate cannot shrink: well under any ratio limit."""
DEEP = b"[" * 30_000 + b"]" * 30_000
"""JSON nested 30,000 deep, well under ``max_metadata_bytes``."""

_CENTRAL_FIELDS = {"method": (10, "<H"), "crc": (16, "<L"), "compressed": (20, "<L"), "size": (24, "<L"),
                   "offset": (42, "<L")}
_LOCAL_FIELDS = {"method": (8, "<H"), "crc": (14, "<L"), "compressed": (18, "<L"), "size": (22, "<L")}


@pytest.fixture(scope="module")
def bzip2_bomb() -> bytes:
    """A bzip2 stream of ``BOMB`` zero bytes: about a hundred bytes."""
    compressor = bz2.BZ2Compressor(9)
    chunks = [compressor.compress(bytes(1024**2)) for _ in range(BOMB // 1024**2)]
    return b"".join(chunks) + compressor.flush()


@pytest.fixture
def outer(tmp_path: Path) -> dict[str, bytes]:
    return entries_of(build_package(MANIFEST, tmp_path / "built"))


@pytest.fixture
def update(outer: dict[str, bytes]) -> dict[str, bytes]:
    return entries_of(outer["Update.zip"])


def lie(data: bytes, name: str, *, central: Mapping[str, int] | None = None,
        local: Mapping[str, int] | None = None) -> bytes:
    """``data`` (a zip) with fields of ``name``'s central directory record and local header overwritten."""
    patched = bytearray(data)
    with zipfile.ZipFile(io.BytesIO(data)) as parsed:
        at, header = parsed.start_dir, parsed.getinfo(name).header_offset
    while patched[at + 46:at + 46 + len(name)] != name.encode():
        lengths = struct.unpack_from("<3H", patched, at + 28)
        at += 46 + sum(lengths)
    for fields, base, values in ((_CENTRAL_FIELDS, at, central), (_LOCAL_FIELDS, header, local)):
        for field, value in (values or {}).items():
            offset, form = fields[field]
            struct.pack_into(form, patched, base + offset, value)
    return bytes(patched)


def raw_zip(entries: Iterable[tuple[str | bytes, bytes]], *, local_headers: bool = True) -> bytes:
    """A zip of stored entries, written by hand: names given as bytes are cp437 (no UTF-8 flag); without
    ``local_headers`` only the central directory, every entry claiming offset 0."""
    body, directory, count = bytearray(), bytearray(), 0
    for given, data in entries:
        name = given.encode() if isinstance(given, str) else given
        crc, offset = zlib.crc32(data), len(body)
        if local_headers:
            body += struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 0, 0, 33, crc, len(data), len(data),
                                len(name), 0) + name + data
        directory += struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, 0, 0, 33, crc, len(data), len(data),
                                 len(name), 0, 0, 0, 0, 0, offset) + name
        count += 1
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, count, count, len(directory), len(body), 0)
    return bytes(body + directory + end)


def package(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / NAME
    path.write_bytes(data)
    return path


def with_bomb(entries: dict[str, bytes], bomb: bytes) -> bytes:
    """``entries`` stored, plus ``Files/bomb.bin``: a bzip2 entry honest about its CRC and size but claiming
    4 GiB of compressed bytes, as in the issue, so that a ratio on declared sizes lets it pass."""
    data = raw_zip([*entries.items(), ("Files/bomb.bin", bomb)])
    fields = {"method": zipfile.ZIP_BZIP2, "crc": zlib.crc32(bytes(BOMB)), "size": BOMB, "compressed": 0xFFFFFFFE}
    return lie(data, "Files/bomb.bin", central=fields, local=fields)


# -- compression methods ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "shown"), [(zipfile.ZIP_BZIP2, "method 12 (bzip2)"),
                                               (zipfile.ZIP_LZMA, "method 14 (lzma)")])
def test_an_entry_neither_stored_nor_deflated_is_refused(tmp_path: Path, outer: dict[str, bytes],
                                                         method: int, shown: str) -> None:
    path = package(tmp_path, zip_bytes({**outer, "Files/data.bin": b"data"}, {"Files/data.bin": method}))
    assert (f"entry 'Files/data.bin' is compressed with {shown}: only stored and deflate entries are accepted"
            in rejected(path))


def test_a_bzip2_entry_in_update_zip_is_refused(tmp_path: Path, outer: dict[str, bytes],
                                                update: dict[str, bytes]) -> None:
    nested = zip_bytes({**update, "Files/data.bin": b"data"}, {"Files/data.bin": zipfile.ZIP_BZIP2})
    path = package(tmp_path, zip_bytes({**outer, "Update.zip": nested}))
    assert "entry 'Files/data.bin' in Update.zip is compressed with method 12 (bzip2)" in rejected(path)


def test_the_bzip2_bomb_of_the_issue_is_refused(tmp_path: Path, outer: dict[str, bytes], bzip2_bomb: bytes) -> None:
    path = package(tmp_path, with_bomb(outer, bzip2_bomb))
    assert path.stat().st_size < 4096
    assert "entry 'Files/bomb.bin' is compressed with method 12 (bzip2)" in rejected(path)


# -- headers that lie ------------------------------------------------------------------------------------


def deflated(outer: dict[str, bytes], data: bytes, **lies: int) -> bytes:
    """The package plus ``Files/data.bin`` holding ``data`` deflated, its headers both lying as ``lies``."""
    return lie(zip_bytes({**outer, "Files/data.bin": data}), "Files/data.bin", central=lies, local=lies)


def test_a_compressed_size_larger_than_the_file_is_refused(tmp_path: Path, outer: dict[str, bytes]) -> None:
    path = package(tmp_path, deflated(outer, bytes(SMALL_ZEROS), compressed=1024**3))
    assert ("entry 'Files/data.bin' is corrupt: its 1073741824 compressed bytes do not fit before the next entry"
            in rejected(path))


def test_a_compressed_size_reaching_into_the_next_entry_is_refused(tmp_path: Path,
                                                                   outer: dict[str, bytes]) -> None:
    data = zip_bytes({"Files/data.bin": NOISE, **outer})
    with zipfile.ZipFile(io.BytesIO(data)) as parsed:
        room = parsed.infolist()[1].header_offset
    path = package(tmp_path, lie(data, "Files/data.bin", central={"compressed": room}, local={"compressed": room}))
    assert (f"entry 'Files/data.bin' is corrupt: its {room} compressed bytes do not fit before the next entry"
            in rejected(path))


def test_a_stream_longer_than_the_declared_size_is_refused(tmp_path: Path, outer: dict[str, bytes]) -> None:
    path = package(tmp_path, deflated(outer, bytes(SMALL_ZEROS), size=1000, crc=zlib.crc32(bytes(1000))))
    assert "entry 'Files/data.bin' is corrupt: it expands past the 1000 bytes its header declares" in rejected(path)


def test_a_stream_shorter_than_the_declared_size_is_refused(tmp_path: Path, outer: dict[str, bytes]) -> None:
    path = package(tmp_path, deflated(outer, b"x" * 1000, size=2000))
    assert "entry 'Files/data.bin' is corrupt: it expands to 1000 bytes, not the 2000" in rejected(path)


def test_a_compressed_size_cutting_the_stream_short_is_refused(tmp_path: Path, outer: dict[str, bytes]) -> None:
    text = b"".join(b"line %d of a log file\n" % n for n in range(2000))
    stream = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    payload = stream.compress(text) + stream.flush()
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    partial = inflater.decompress(payload[:-50]) + inflater.flush()
    path = package(tmp_path, deflated(outer, text, compressed=len(payload) - 50, size=len(partial),
                                      crc=zlib.crc32(partial)))
    assert "entry 'Files/data.bin' is corrupt: its compressed data is truncated" in rejected(path)


@pytest.mark.parametrize("field", ["size", "compressed", "crc", "method"])
def test_a_local_header_disagreeing_with_the_central_directory_is_refused(tmp_path: Path,
                                                                          outer: dict[str, bytes],
                                                                          field: str) -> None:
    data = zip_bytes({**outer, "Files/data.bin": b"x" * 1000})
    path = package(tmp_path, lie(data, "Files/data.bin", local={field: 0}))
    assert ("entry 'Files/data.bin' is corrupt: its local header disagrees with the central directory"
            in rejected(path))


def test_a_corrupt_check_file_is_refused_with_one_reason(tmp_path: Path, outer: dict[str, bytes],
                                                        update: dict[str, bytes]) -> None:
    nested = lie(zip_bytes(update), "Prerequisites/nats.json", central={"crc": 0}, local={"crc": 0})
    message = rejected(package(tmp_path, zip_bytes({**outer, "Update.zip": nested})))
    assert message.endswith("rejected: entry 'Prerequisites/nats.json' in Update.zip is corrupt: "
                            "it fails its CRC-32 check")
    assert message.count("rejected:") == 1


@pytest.mark.parametrize(("change", "problem"), [(-1, "its central directory holds more than its end record counts"),
                                                 (+1, "its central directory runs past its place")])
def test_an_end_record_miscounting_the_entries_is_refused(tmp_path: Path, outer: dict[str, bytes], change: int,
                                                          problem: str) -> None:
    patched = bytearray(zip_bytes(outer))
    end = patched.rindex(b"PK\x05\x06")
    struct.pack_into("<2H", patched, end + 8, len(outer) + change, len(outer) + change)
    assert f"the file is not a zip archive: {problem}" in rejected(package(tmp_path, bytes(patched)))


def test_two_entries_at_one_place_are_refused(tmp_path: Path, outer: dict[str, bytes]) -> None:
    data = zip_bytes(outer)
    with zipfile.ZipFile(io.BytesIO(data)) as parsed:
        manifest_at = parsed.getinfo("manifest.json").header_offset
    path = package(tmp_path, lie(data, "Description.txt", central={"offset": manifest_at}))
    assert "the file is not a zip archive: two entries start at the same place" in rejected(path)


def test_a_name_over_the_limit_is_refused(tmp_path: Path, outer: dict[str, bytes]) -> None:
    outer["Files/" + "n" * 2000] = b""
    assert "an entry has a name of 2006 bytes, over the limit of 1024" in rejected(package(tmp_path, zip_bytes(outer)))


def test_an_entry_over_the_per_entry_limit_is_refused(tmp_path: Path, outer: dict[str, bytes]) -> None:
    path = package(tmp_path, zip_bytes(outer))
    message = rejected(path, ArchiveLimits(max_entry_uncompressed=100))
    assert "entry 'manifest.json' declares" in message
    assert "bytes uncompressed, over the limit of 100 per entry" in message


def as_zip64(data: bytes) -> bytes:
    """``data`` (a zip) ending in zip64 end records, its classic end record saying only "see zip64"."""
    end = data.rindex(b"PK\x05\x06")
    *_, count, size, start, _ = struct.unpack_from("<4s4H2LH", data, end)
    record = struct.pack("<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, count, count, size, start)
    locator = struct.pack("<4sLQL", b"PK\x06\x07", 0, end, 1)
    return data[:end] + record + locator + struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF,
                                                       0xFFFFFFFF, 0xFFFFFFFF, 0)


def test_zip64_end_records_and_local_fields_are_read(tmp_path: Path, outer: dict[str, bytes]) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as made:
        for name, data in outer.items():
            with made.open(name, "w", force_zip64=True) as sink:
                sink.write(data)
    assert inspect_package(package(tmp_path, as_zip64(buffer.getvalue()))).manifest == MANIFEST


# -- manifests nested too deep -----------------------------------------------------------------------------


def test_a_manifest_nested_100000_deep_is_invalid_input() -> None:
    for parse in (manifest_from_json, check_from_json):
        with pytest.raises(InvalidInput) as caught:
            parse(b"[" * 100_000 + b"]" * 100_000, "manifest.json")
        assert str(caught.value) == "manifest.json is not valid JSON: nested too deeply"


def test_a_package_whose_manifest_is_nested_too_deep_is_refused(tmp_path: Path, outer: dict[str, bytes]) -> None:
    outer["manifest.json"] = b'{"description": ' + DEEP + b"}"
    assert "manifest.json is not valid JSON: nested too deeply" in rejected(package(tmp_path, zip_bytes(outer)))


def test_a_check_file_nested_too_deep_is_refused(tmp_path: Path, outer: dict[str, bytes],
                                                 update: dict[str, bytes]) -> None:
    update["Prerequisites/nats.json"] = b'{"required": ' + DEEP + b"}"
    path = package(tmp_path, zip_bytes({**outer, "Update.zip": zip_bytes(update)}))
    assert "Update.zip/Prerequisites/nats.json is not valid JSON: nested too deeply" in rejected(path)


def invalid_checks(count: int) -> bytes:
    """A manifest whose ``count`` prerequisites are each invalid: a number, not a check."""
    return b'{"version": "10.4.9.0", "build": 14794, "kind": "Full", "prerequisites": [%s]}' % (
        b",".join([b"0"] * count))


def test_a_manifest_with_thousands_of_errors_names_ten(tmp_path: Path, outer: dict[str, bytes]) -> None:
    outer["manifest.json"] = invalid_checks(20_000)
    message = rejected(package(tmp_path, zip_bytes(outer)))
    assert message.count("Input should be a valid dictionary") == 10
    assert message.endswith("; and 19990 more")


# -- memory ------------------------------------------------------------------------------------------------


def long_names(count: int) -> list[tuple[bytes, bytes]]:
    """``count`` empty entries named by ``max_name_bytes`` cp437 bytes, each a character of two bytes in memory."""
    return [(b"Files/" + b"%05d" % n + b"\xb0" * 1013, b"") for n in range(count)]


def at_the_limits(outer: dict[str, bytes], update: dict[str, bytes]) -> bytes:
    """A valid package of 10,000 entries (the most), nearly all in Update.zip with the longest names."""
    nested = raw_zip([*update.items(), *long_names(10_000 - len(outer) - len(update))])
    return raw_zip({**outer, "Update.zip": nested}.items())


def long_names_and_many_errors(outer: dict[str, bytes]) -> bytes:
    """10,000 entries with the longest names, and a manifest at the size limit with 32,000 invalid fields."""
    return raw_zip([*{**outer, "manifest.json": invalid_checks(32_000)}.items(), *long_names(10_000 - len(outer))])


HOSTILE: dict[str, Callable[[dict[str, bytes], dict[str, bytes], bytes], bytes]] = {
    "bzip2 bomb": lambda outer, update, bomb: with_bomb(outer, bomb),
    "bzip2 bomb in Update.zip": lambda outer, update, bomb: raw_zip(
        {**outer, "Update.zip": with_bomb(update, bomb)}.items()),
    "deflate stream past its declared size": lambda outer, update, bomb: deflated(
        outer, bytes(BOMB), size=1000, crc=zlib.crc32(bytes(1000))),
    "a 64 MB central directory of long names": lambda outer, update, bomb: raw_zip(
        [(b"%05d" % n + b"n" * 64_000, b"") for n in range(1050)], local_headers=False),
    "the longest names and 32,000 invalid manifest fields": lambda outer, update, bomb: long_names_and_many_errors(
        outer),
}


@pytest.mark.parametrize("build", HOSTILE.values(), ids=HOSTILE.keys())
def test_inspecting_a_hostile_package_stays_under_the_memory_bound(
        tmp_path: Path, outer: dict[str, bytes], update: dict[str, bytes], bzip2_bomb: bytes,
        build: Callable[[dict[str, bytes], dict[str, bytes], bytes], bytes]) -> None:
    path = package(tmp_path, build(outer, update, bzip2_bomb))
    tracemalloc.start()
    try:
        with pytest.raises(PackageRejected):
            inspect_package(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < MEMORY_BOUND


def test_a_package_at_the_entry_and_name_limits_stays_under_the_memory_bound(
        tmp_path: Path, outer: dict[str, bytes], update: dict[str, bytes]) -> None:
    path = package(tmp_path, at_the_limits(outer, update))
    tracemalloc.start()
    try:
        inspected = inspect_package(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(inspected.entries) == 10_000
    assert peak < MEMORY_BOUND


# -- concurrent uploads ------------------------------------------------------------------------------------


def test_concurrent_puts_of_one_package_each_store_it_whole(tmp_path: Path) -> None:
    source = tmp_path / NAME
    source.write_bytes(bytes(range(256)) * 1024)
    store = FilePackageStore(tmp_path / "store")
    for round_ in range(10):
        sha256 = f"{round_:064x}"
        start = threading.Barrier(8)

        def put(digest: str = sha256, barrier: threading.Barrier = start) -> Path:
            barrier.wait()
            return store.put(source, digest)

        with ThreadPoolExecutor(8) as pool:
            stored = {future.result() for future in [pool.submit(put) for _ in range(8)]}
        assert stored == {store.path_of(sha256)}
        assert store.path_of(sha256).read_bytes() == source.read_bytes()
    assert len(list(store.root.iterdir())) == 10


def test_concurrent_uploads_of_one_new_package_give_one_success_and_conflicts(
        make_harness: Callable[..., RolloutHarness]) -> None:
    h = make_harness(upload=False)
    store = FilePackageStore(h.tmp_path / "store")
    for version in ("10.4.9.0-14794", "10.4.10.0-14900", "10.5.0.0-15000"):
        path = h.build(version)
        start = threading.Barrier(6)

        def upload(file: Path = path, barrier: threading.Barrier = start) -> PackageRecord | Conflict:
            barrier.wait()
            try:
                return upload_package(h.service, store, file, actor=ACTOR)
            except Conflict as conflict:
                return conflict

        with ThreadPoolExecutor(6) as pool:
            outcomes = [future.result() for future in [pool.submit(upload) for _ in range(6)]]
        records = [outcome for outcome in outcomes if isinstance(outcome, PackageRecord)]
        assert len(records) == 1
        assert all("was uploaded already" in str(outcome) for outcome in outcomes if isinstance(outcome, Conflict))
        assert store.path_of(records[0].sha256).read_bytes() == path.read_bytes()
    assert len(h.service.packages()) == 3
    assert sorted(p.name for p in store.root.iterdir()) == sorted(f"{p.sha256}.dmupgrade"
                                                                  for p in h.service.packages())
