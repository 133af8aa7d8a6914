"""Programs a test needs that a newcomer's machine may lack (promtool, Prometheus, Chromium).

Without one, the test is skipped, saying what to install; CI sets the ``DMA_UPGRADE_REQUIRE_*`` variable
that makes a missing program a failure instead, as ``DMA_UPGRADE_REQUIRE_POSTGRES`` does for PostgreSQL.
"""

from __future__ import annotations

import os
import shutil

import pytest

REQUIRE_PROMETHEUS = "DMA_UPGRADE_REQUIRE_PROMETHEUS"
"""Set by CI: the promtool and Prometheus tests must run."""


def needed_program(name: str, *, required_by: str, install: str) -> str:
    """The path of program ``name`` on ``PATH``; skip the test without it, or fail if ``required_by`` is set."""
    found = shutil.which(name)
    if found is not None:
        return found
    reason = f"{name} is not installed ({install})"
    if os.environ.get(required_by):
        pytest.fail(f"{reason}, and {required_by} is set")
    pytest.skip(reason)
