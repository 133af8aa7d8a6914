"""``/api/v1/packages``: uploading and listing upgrade packages, and their history."""

from __future__ import annotations

import tempfile
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Annotated

from fastapi import APIRouter, File, Response, UploadFile

from dma_upgrade.adapters.api.context import Context, Operator, Viewer
from dma_upgrade.adapters.api.errors import ERROR_RESPONSES
from dma_upgrade.adapters.errors import PayloadTooLarge
from dma_upgrade.adapters.packages.upload import upload_package
from dma_upgrade.adapters.private_files import private_directory
from dma_upgrade.adapters.read.history_queries import package_history as package_history_rows
from dma_upgrade.adapters.shapes.models import PackageHistoryOut, PackageOut
from dma_upgrade.engine.errors import InvalidInput

router = APIRouter(prefix="/api/v1/packages", tags=["packages"], responses=ERROR_RESPONSES)

_CHUNK = 1024 * 1024


@router.post("", status_code=201)
def upload(file: Annotated[UploadFile, File(description="the .dmupgrade file")], context: Context,
           caller: Operator) -> PackageOut:
    """Validate a package exactly as the CLI does, store it by SHA-256 and record the upload.

    A body declared or streamed far over the limit was refused before it was read (``BodyGuard``)."""
    limit = context.app.settings.max_upload_bytes
    name = _file_name(file.filename)
    spool_root = context.app.settings.data_dir
    private_directory(spool_root)
    with tempfile.TemporaryDirectory(dir=spool_root, prefix=".upload-") as spool:
        target = Path(spool) / name
        _copy_limited(file, target, limit)
        return PackageOut.of(upload_package(context.service, context.packages, target, actor=caller.name))


def _file_name(given: str | None) -> str:
    """The upload's own file name, without any folder a client put in front of it."""
    name = PureWindowsPath(PurePosixPath(given or "").name).name.strip()
    if not name or name in {".", ".."} or len(name) > 255 or "\x00" in name:
        raise InvalidInput("the upload needs the package's file name (e.g. 'DataMiner 10.4.9.0-14794.dmupgrade')")
    return name


def _copy_limited(file: UploadFile, target: Path, limit: int) -> None:
    copied = 0
    with target.open("wb") as sink:
        while chunk := file.file.read(_CHUNK):
            copied += len(chunk)
            if copied > limit:
                raise PayloadTooLarge(f"the package is over the upload limit of {limit} bytes")
            sink.write(chunk)
    if copied == 0:
        raise InvalidInput(f"{target.name} is empty: not a .dmupgrade package")


@router.get("")
def list_packages(context: Context, _: Viewer) -> list[PackageOut]:
    """Every uploaded package, oldest first; a package that executed an upgrade stays listed as completed."""
    return [PackageOut.of(p) for p in context.service.packages()]


@router.get("/history")
def package_history(context: Context, _: Viewer, response: Response) -> list[PackageHistoryOut]:
    """Every package ever uploaded, with its status and every rollout that used it (a projection, as it is: the
    headers say how far behind)."""
    reading = package_history_rows(context.app)
    response.headers.update(reading.lag.headers() if reading.lag else {})
    return [PackageHistoryOut.of(r) for r in reading.value]


@router.get("/{reference}")
def get_package(reference: str, context: Context, _: Viewer) -> PackageOut:
    """One package by SHA-256 (or 8+ leading digits) or file name."""
    return PackageOut.of(context.service.package(reference))



