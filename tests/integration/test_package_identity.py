"""Package identity (issue 15, item 3): a package must be the DataMiner server upgrade it says it is.

Description.txt must name a Full or Web DataMiner upgrade of the manifest's kind; a file name of the DataMiner
form must name the version, build and kind inside (any other name is accepted on its content). A refused upload
appends nothing and leaves nothing in the data dir, through the CLI and the API alike; ``packages build`` keeps
an existing file unless ``--force``."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from dma_upgrade.adapters.access.tokens import Role
from dma_upgrade.adapters.packages.archive import build_package, inspect_package
from dma_upgrade.adapters.sql.database import create_db_engine
from dma_upgrade.adapters.sql.event_store import SqlEventStore
from dma_upgrade.engine.catalog import default_codec
from dma_upgrade.engine.packages import PackageKind, PackageManifest, PackageRejected, check_identity
from dma_upgrade.engine.versions import parse_version
from tests.conftest import FakeClock
from tests.e2e.cli import run_cli
from tests.integration.api.harness import ApiHarness

MANIFEST = PackageManifest.for_version(parse_version("10.4.0.0(CU3)-14200"), PackageKind.FULL)
CANONICAL = "DataMiner 10.4.0.0(CU3)-14200 Full Upgrade.dmupgrade"


def _rewritten(package: Path, target: Path, **entries: bytes) -> Path:
    """``package`` written to ``target`` with ``entries`` (by name) replaced."""
    with zipfile.ZipFile(package) as source:
        contents = {info.filename: source.read(info) for info in source.infolist()}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in {**contents, **{k.replace("_", "."): v for k, v in entries.items()}}.items():
            archive.writestr(name, data, compress_type=zipfile.ZIP_STORED if name == "Update.zip"
                             else zipfile.ZIP_DEFLATED)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(buffer.getvalue())
    return target


@pytest.fixture
def built(tmp_path: Path) -> Path:
    return build_package(MANIFEST, tmp_path / "built")


def _reason(path: Path) -> str:
    with pytest.raises(PackageRejected) as caught:
        inspect_package(path)
    assert "\n" not in str(caught.value)
    return caught.value.reason


def test_a_built_package_names_itself_and_inspects(built: Path) -> None:
    assert built.name == CANONICAL
    assert inspect_package(built).manifest == MANIFEST


def test_a_cube_client_package_is_refused(built: Path, tmp_path: Path) -> None:
    cube = _rewritten(built, tmp_path / "cube" / CANONICAL, Description_txt=b"DataMiner Cube Upgrade\r\n")
    assert _reason(cube) == ("Description.txt says 'DataMiner Cube Upgrade': not a DataMiner server upgrade "
                             "(expected 'DataMiner Upgrade (Full)' or 'DataMiner Upgrade (Web)')")


def test_an_empty_or_binary_description_is_refused(built: Path, tmp_path: Path) -> None:
    empty = _rewritten(built, tmp_path / "empty" / "a.dmupgrade", Description_txt=b"  \n")
    assert _reason(empty).startswith("Description.txt says nothing: not a DataMiner server upgrade")
    binary = _rewritten(built, tmp_path / "binary" / "a.dmupgrade", Description_txt=b"\xff\xfe\x00D")
    assert _reason(binary) == "Description.txt is not UTF-8 text"


def test_a_description_of_another_kind_than_the_manifest_is_refused(built: Path, tmp_path: Path) -> None:
    web = _rewritten(built, tmp_path / "web" / "a.dmupgrade", Description_txt=b"DataMiner Upgrade (Web)\n")
    assert _reason(web) == "Description.txt says a Web upgrade, the manifest a Full one"


def test_a_description_with_a_byte_order_mark_and_more_lines_is_accepted(built: Path, tmp_path: Path) -> None:
    text = "\ufeff\nDataMiner Upgrade (Full)\nbuilt by Skyline\n".encode()
    assert inspect_package(_rewritten(built, tmp_path / "bom" / "a.dmupgrade", Description_txt=text)).manifest \
        == MANIFEST


@pytest.mark.parametrize(("name", "named"), [
    ("DataMiner 10.5.0.0-99999 Full Upgrade.dmupgrade", "10.5.0.0-99999 Full"),
    ("DataMiner 10.4.0.0(CU3)-14201 Full Upgrade.dmupgrade", "10.4.0.0(CU3)-14201 Full"),
    ("DataMiner 10.4.0.0(CU3)-14200 Web Upgrade.dmupgrade", "10.4.0.0(CU3)-14200 Web"),
])
def test_a_dataminer_file_name_must_agree_with_the_package(built: Path, tmp_path: Path, name: str,
                                                           named: str) -> None:
    renamed = built.rename(tmp_path / name)
    assert _reason(renamed) == (f"the file name says {named}, the package holds 10.4.0.0(CU3)-14200 Full; "
                                f"rename it {CANONICAL!r} or rebuild it")


def test_a_malformed_dataminer_file_name_is_refused(built: Path, tmp_path: Path) -> None:
    renamed = built.rename(tmp_path / "DataMiner 10.4 CU3 Full Upgrade.dmupgrade")
    assert _reason(renamed).startswith("invalid DataMiner version '10.4 CU3'")


@pytest.mark.parametrize("name", ["whatever.dmupgrade", "DataMiner 10.4.0.0(CU3)-14200 Full Upgrade (1).dmupgrade",
                                  "DataMiner 10.4.0.0 CU3-14200 Full Upgrade.dmupgrade"])
def test_other_names_and_other_notations_are_accepted_on_content(built: Path, tmp_path: Path, name: str) -> None:
    assert inspect_package(built.rename(tmp_path / name)).manifest == MANIFEST


def test_a_cu_written_as_zero_or_left_out_names_the_same_version() -> None:
    manifest = PackageManifest.for_version(parse_version("10.5.5.0(CU0)-15664"), PackageKind.WEB)
    check_identity("DataMiner 10.5.5.0-15664 Web Upgrade.dmupgrade", "DataMiner Upgrade (Web)", manifest)


def _head(db_url: str) -> int:
    engine = create_db_engine(db_url)
    try:
        return SqlEventStore(engine, default_codec(), FakeClock()).head_position()
    finally:
        engine.dispose()


def _env(tmp_path: Path) -> dict[str, str]:
    return {"DMA_UPGRADE_DATA_DIR": str(tmp_path / "data"), "COLUMNS": "300"}


def _stored(data_dir: Path) -> list[str]:
    """Every file in the data dir but the database (SQLite and its journal files)."""
    return sorted(str(p.relative_to(data_dir)) for p in data_dir.rglob("*")
                  if p.is_file() and not p.name.startswith("dma-upgrade.db"))


def test_the_cli_refuses_a_mislabelled_upload_appending_and_keeping_nothing(built: Path, tmp_path: Path,
                                                                            db_url: str) -> None:
    lying = built.rename(tmp_path / "DataMiner 10.5.0.0-99999 Full Upgrade.dmupgrade")
    refused = run_cli("packages", "upload", str(lying), database_url=db_url, env=_env(tmp_path))
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert refused.stderr.strip() == (
        f"error: package {lying.name!r} rejected: the file name says 10.5.0.0-99999 Full, the package holds "
        f"10.4.0.0(CU3)-14200 Full; rename it {CANONICAL!r} or rebuild it")
    assert _head(db_url) == 0
    assert _stored(tmp_path / "data") == []
    accepted = run_cli("packages", "upload", str(lying.rename(tmp_path / "whatever.dmupgrade")),
                       database_url=db_url, env=_env(tmp_path))
    assert accepted.returncode == 0, accepted.stderr
    assert len(_stored(tmp_path / "data")) == 1


def test_the_api_refuses_a_cube_package_appending_and_keeping_nothing(built: Path, tmp_path: Path, db_url: str,
                                                                      clock: FakeClock) -> None:
    cube = _rewritten(built, tmp_path / "cube" / CANONICAL, Description_txt=b"DataMiner Cube Upgrade\n")
    api = ApiHarness(db_url, clock, tmp_path)
    try:
        head = api.head()
        response = api.upload(cube, Role.OPERATOR)
        assert response.status_code == 422, response.text
        assert response.json() == {"error": "invalid_input", "detail": (
            f"package {CANONICAL!r} rejected: Description.txt says 'DataMiner Cube Upgrade': not a DataMiner "
            f"server upgrade (expected 'DataMiner Upgrade (Full)' or 'DataMiner Upgrade (Web)')")}
        assert api.head() == head
        assert _stored(tmp_path / "data") == []
    finally:
        api.close()


def test_packages_build_refuses_to_overwrite_unless_forced(tmp_path: Path) -> None:
    args = ("packages", "build", "--version", "10.4.0.0(CU3)-14200", "--output", str(tmp_path / "out"))
    first = run_cli(*args, env=_env(tmp_path))
    assert first.returncode == 0, first.stderr
    target = tmp_path / "out" / CANONICAL
    target.write_bytes(b"an operator's own file")
    again = run_cli(*args, env=_env(tmp_path))
    assert again.returncode == 4, again.stdout + again.stderr
    assert again.stderr.strip() == f"error: {target} exists already; pass --force to overwrite it"
    assert target.read_bytes() == b"an operator's own file"
    assert sorted(p.name for p in target.parent.iterdir()) == [CANONICAL]
    forced = run_cli(*args, "--force", env=_env(tmp_path))
    assert forced.returncode == 0, forced.stderr
    assert inspect_package(target).manifest.dataminer_version == MANIFEST.dataminer_version
