"""Directories and files of dma-upgrade's own (database, packages, API tokens): readable by their owner only."""

from __future__ import annotations

from pathlib import Path

PRIVATE_DIRECTORY = 0o700
"""The mode of the directories dma-upgrade makes (data directory, package store, spool, database folder)."""
PRIVATE_FILE = 0o600
"""The mode of a SQLite database's files."""


def private_directory(path: Path) -> None:
    """Create ``path`` and its missing parents readable by their owner only (0700, as the XDG base directory
    specification asks); an existing directory keeps its mode."""
    missing = [directory for directory in (path, *path.parents) if not directory.exists()]
    for directory in reversed(missing):
        directory.mkdir(mode=PRIVATE_DIRECTORY, exist_ok=True)
