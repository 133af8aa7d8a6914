"""Uploaded packages on disk, content-addressed by SHA-256."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


class FilePackageStore:
    """Keeps each package once, as ``<root>/<sha256>.dmupgrade``; writes are atomic."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path_of(self, sha256: str) -> Path:
        return self.root / f"{sha256}.dmupgrade"

    def put(self, source: Path, sha256: str) -> Path:
        """Copy ``source`` in under its hash (a no-op when it is there already)."""
        target = self.path_of(sha256)
        if target.exists():
            return target
        self.root.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(f".part-{os.getpid()}")
        shutil.copyfile(source, partial)
        os.replace(partial, target)
        return target

    def discard(self, sha256: str) -> None:
        """Remove a package whose upload was refused after it was copied in."""
        self.path_of(sha256).unlink(missing_ok=True)
