"""Uploaded packages on disk, content-addressed by SHA-256."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from dma_upgrade.adapters.private_files import private_directory


class FilePackageStore:
    """Keeps each package once, as ``<root>/<sha256>.dmupgrade``; writes are atomic."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path_of(self, sha256: str) -> Path:
        return self.root / f"{sha256}.dmupgrade"

    def put(self, source: Path, sha256: str) -> Path:
        """Copy ``source`` in under its hash (a no-op when it is there already).

        Each call writes its own temporary file in the store and renames it into place, so concurrent
        puts of one package never share a partial file: the last rename wins with the same bytes.
        """
        target = self.path_of(sha256)
        if target.exists():
            return target
        private_directory(self.root)
        descriptor, partial = tempfile.mkstemp(dir=self.root, prefix=f".{sha256}.", suffix=".part")
        try:
            with os.fdopen(descriptor, "wb") as sink, source.open("rb") as stream:
                shutil.copyfileobj(stream, sink)
                sink.flush()
                os.fsync(sink.fileno())
            os.replace(partial, target)
        except BaseException:
            Path(partial).unlink(missing_ok=True)
            raise
        return target

    def discard(self, sha256: str) -> None:
        """Remove a package whose upload was refused after it was copied in."""
        self.path_of(sha256).unlink(missing_ok=True)
