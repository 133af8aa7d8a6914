"""Uploading a package: validate the file, keep it by SHA-256, record the upload (CLI and API alike)."""

from __future__ import annotations

from pathlib import Path

from dma_upgrade.adapters.packages.archive import inspect_package
from dma_upgrade.adapters.packages.store import FilePackageStore
from dma_upgrade.engine.records import PackageRecord
from dma_upgrade.engine.service import UpgradeService


def upload_package(service: UpgradeService, packages: FilePackageStore, file: Path, *, actor: str) -> PackageRecord:
    """Validate ``file`` as an untrusted ``.dmupgrade``, store it and append ``PackageUploaded`` with the clusters
    that accept it.

    A refused upload (hostile archive, not the DataMiner server upgrade it says, no cluster accepting it, package
    uploaded already) raises and leaves neither an event nor a stored file behind, unless the same package was
    stored by an earlier upload.
    """
    inspected = inspect_package(file)
    packages.put(file, inspected.sha256)
    try:
        return service.record_upload(sha256=inspected.sha256, file_name=file.name,
                                     size=inspected.size, manifest=inspected.manifest, actor=actor)
    except Exception:
        if not any(p.sha256 == inspected.sha256 for p in service.packages()):
            packages.discard(inspected.sha256)
        raise
