"""Hostile packages and concurrent uploads through the real CLI and a real ``dma-upgrade serve``: one line and
exit 2 for a package that lies, 201 or 409 (never 500) for concurrent uploads of one new package."""

from __future__ import annotations

import bz2
import random
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from dma_upgrade.adapters.access.tokens import Role, TokenFile
from dma_upgrade.adapters.packages.archive import build_package
from tests.e2e.cli import run_cli
from tests.e2e.serve import serving
from tests.integration.test_hostile_archives import BOMB, DEEP, package, with_bomb
from tests.integration.test_package_archive import MANIFEST, NAME, entries_of, zip_bytes

PAYLOAD = 8 * 1024**2
"""Random bytes in each concurrently uploaded package, so that storing it takes a while."""


@pytest.fixture
def outer(tmp_path: Path) -> dict[str, bytes]:
    return entries_of(build_package(MANIFEST, tmp_path / "built"))


def one_error_line(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_the_cli_refuses_the_bzip2_bomb_of_the_issue_in_one_line(tmp_path: Path, outer: dict[str, bytes]) -> None:
    env = {"DMA_UPGRADE_DATA_DIR": str(tmp_path / "data")}
    bomb = package(tmp_path, with_bomb(outer, bz2.compress(bytes(BOMB))))
    one_error_line(run_cli("packages", "upload", str(bomb), env=env),
                   f"package {NAME!r} rejected: entry 'Files/bomb.bin' is compressed with method 12 (bzip2)")
    listed = run_cli("packages", "list", env=env)
    assert listed.returncode == 0
    assert "10.4.9.0" not in listed.stdout


def test_the_cli_refuses_a_manifest_nested_too_deep_in_one_line(tmp_path: Path, outer: dict[str, bytes]) -> None:
    outer["manifest.json"] = DEEP
    deep = package(tmp_path, zip_bytes(outer))
    one_error_line(run_cli("packages", "upload", str(deep), env={"DMA_UPGRADE_DATA_DIR": str(tmp_path / "data")}),
                   "manifest.json is not valid JSON: nested too deeply")


def test_concurrent_api_uploads_of_one_new_package_answer_201_or_409(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    token = TokenFile(data_dir / "api-tokens.json").add("uploader", Role.OPERATOR)
    env = {"DMA_UPGRADE_DATA_DIR": str(data_dir), "DMA_UPGRADE_API_CONCURRENT_UPLOADS": "8"}
    with serving(tmp_path / "serve.log", env=env) as serve, httpx.Client(
            base_url=serve.url, headers={"Authorization": f"Bearer {token}"}, timeout=60) as client:
        for build in range(14794, 14799):
            built = build_package(MANIFEST.model_copy(update={"build": build}), tmp_path / str(build))
            content = zip_bytes({**entries_of(built), "Upgrade.exe": random.Random(build).randbytes(PAYLOAD)})

            def upload(data: bytes = content, number: int = build) -> int:
                files = {"file": (f"DataMiner 10.4.9.0-{number} Full Upgrade.dmupgrade", data)}
                return client.post("/api/v1/packages", files=files).status_code

            with ThreadPoolExecutor(4) as pool:
                statuses = sorted(pool.map(lambda _: upload(), range(4)))
            assert statuses == [201, 409, 409, 409], serve.output()
