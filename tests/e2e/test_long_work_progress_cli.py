"""Long work draws its progress on stderr when stderr is a terminal (a real one: a pty), and nothing of it when
stderr is piped or with ``--quiet``; standard output (and an export's file) is the same byte for byte in all three.

The commands run on a copy of the demo's database (``test_read_side_cli``); ``db upgrade`` on a fresh file.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory

from dma_upgrade.adapters.shapes.models import AuditVerifyOut
from dma_upgrade.adapters.sql.database import alembic_config
from tests.e2e import test_read_side_cli as read_side
from tests.e2e.cli import ROOT
from tests.e2e.test_read_side_cli import Demo

pristine = read_side.pristine
"""The demo's database, made once for this module."""
demo = read_side.demo
"""A private copy of it for each test."""

BAR = "━"
"""What rich's progress bar is drawn with."""
PROGRESS_LIKE = re.compile(rf"{BAR}|\d+/\d+|it/s|\x1b\[\?25l")
"""Anything of a progress display: the bar, done of total, the rate, the hidden cursor."""
TERMINAL_ENV_VARIABLES = ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "NO_COLOR", "COLUMNS", "LINES")
"""Variables that make rich take a pipe for a terminal (or size it): left out, so rich asks the stream itself."""


@dataclass(frozen=True)
class Run:
    """What a command printed: stdout as bytes, stderr as text (a terminal's, escape codes and all)."""

    code: int
    stdout: bytes
    stderr: str


def run(*args: str, env: dict[str, str], terminal: bool) -> Run:
    """``dma-upgrade ARGS`` with stdout piped and stderr on a new terminal (a pty of 160 columns) or piped."""
    full_env = {key: value for key, value in os.environ.items()
                if key not in TERMINAL_ENV_VARIABLES and key != "DMA_UPGRADE_DATABASE_URL"}
    full_env.update(env, TERM="xterm-256color")
    command = [sys.executable, "-m", "dma_upgrade", *args]
    if not terminal:
        done = subprocess.run(command, capture_output=True, env=full_env, cwd=ROOT, timeout=120, check=False)
        return Run(done.returncode, done.stdout, done.stderr.decode())
    reader, writer = pty.openpty()
    fcntl.ioctl(writer, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
    chunks: list[bytes] = []
    drained = threading.Thread(target=_drain, args=(reader, chunks))
    drained.start()
    try:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=writer, stdin=subprocess.DEVNULL,
                                   env=full_env, cwd=ROOT)
    finally:
        os.close(writer)
    stdout, _ = process.communicate(timeout=120)
    drained.join(timeout=30)
    os.close(reader)
    return Run(process.returncode, stdout, b"".join(chunks).decode(errors="replace"))


def _drain(reader: int, chunks: list[bytes]) -> None:
    """Read the terminal until every writer closed it (``EIO`` on Linux)."""
    while True:
        try:
            data = os.read(reader, 65536)
        except OSError:
            return
        if not data:
            return
        chunks.append(data)


def head(demo: Demo) -> int:
    return int(demo.events[-1]["position"])


def three_ways(*args: str, env: dict[str, str]) -> tuple[Run, Run, Run]:
    """The command on a terminal, piped, and on a terminal with ``--quiet``; each must succeed."""
    runs = (run(*args, env=env, terminal=True), run(*args, env=env, terminal=False),
            run(*args, "--quiet", env=env, terminal=True))
    for each in runs:
        assert each.code == 0, each
    return runs


def assert_no_progress(*runs: Run) -> None:
    for each in runs:
        assert not PROGRESS_LIKE.search(each.stderr), each.stderr


def test_audit_verify_draws_events_done_of_the_head_on_a_terminal_only(demo: Demo) -> None:
    shown, piped, quiet = three_ways("audit", "verify", "--output", "json", env=demo.env)

    assert f"{head(demo)}/{head(demo)}" in shown.stderr
    assert BAR in shown.stderr and "verifying" in shown.stderr
    assert_no_progress(piped, quiet)
    assert piped.stderr == quiet.stderr == ""
    assert shown.stdout == piped.stdout == quiet.stdout
    verdict = AuditVerifyOut.model_validate(json.loads(piped.stdout))
    assert verdict.ok and verdict.verified == head(demo)


def test_audit_export_to_a_file_draws_its_progress_and_writes_the_same_bytes(demo: Demo, tmp_path: Path) -> None:
    files = [tmp_path / f"audit-{way}.jsonl" for way in ("shown", "piped", "quiet")]
    shown = run("audit", "export", "--format", "jsonl", "--output", str(files[0]), env=demo.env, terminal=True)
    piped = run("audit", "export", "--format", "jsonl", "--output", str(files[1]), env=demo.env, terminal=False)
    quiet = run("audit", "export", "--format", "jsonl", "-o", str(files[2]), "-q", env=demo.env, terminal=True)

    assert (shown.code, piped.code, quiet.code) == (0, 0, 0)
    assert f"{head(demo)}/{head(demo)}" in shown.stderr
    assert_no_progress(piped, quiet)
    anchor_line = f"({head(demo)} events)"
    assert anchor_line in shown.stderr and anchor_line in piped.stderr and anchor_line in quiet.stderr
    assert files[0].read_bytes() == files[1].read_bytes() == files[2].read_bytes()
    assert shown.stdout == piped.stdout == quiet.stdout == b""


def test_audit_export_of_one_rollout_counts_the_stretch_of_the_log_it_reads(demo: Demo, tmp_path: Path) -> None:
    positions = [int(e["position"]) for e in demo.events if e["correlation_id"] == demo.rollout_id]
    stretch = max(positions) - min(positions) + 1
    shown = run("audit", "export", "--format", "csv", "--rollout", demo.rollout_id, "--output",
                str(tmp_path / "rollout.csv"), env=demo.env, terminal=True)

    assert shown.code == 0, shown
    assert f"{stretch}/{stretch}" in shown.stderr


def test_audit_export_on_standard_output_draws_no_progress_and_prints_the_same_bytes(demo: Demo) -> None:
    shown = run("audit", "export", "--format", "csv", env=demo.env, terminal=True)
    piped = run("audit", "export", "--format", "csv", env=demo.env, terminal=False)

    assert shown.code == piped.code == 0
    assert_no_progress(shown, piped)
    assert shown.stdout == piped.stdout
    assert shown.stdout.decode().splitlines()[-1].endswith(f"exported {head(demo)}")


def test_projections_rebuild_draws_the_log_replayed_and_prints_the_same_summary(demo: Demo) -> None:
    shown, piped, quiet = three_ways("projections", "rebuild", env=demo.env)

    assert f"{head(demo)}/{head(demo)}" in shown.stderr
    assert "rebuilding" in shown.stderr
    assert_no_progress(piped, quiet)
    assert shown.stdout == piped.stdout == quiet.stdout
    assert b"progress: rebuilt from" in piped.stdout


def test_db_upgrade_draws_the_migrations_done_of_those_to_run(tmp_path: Path) -> None:
    migrations = len(list(ScriptDirectory.from_config(alembic_config()).walk_revisions()))
    stdouts = []
    for way in ("shown", "piped", "quiet"):
        folder = tmp_path / way  # the same file name in each: the same line on stdout
        quiet = ["-q"] if way == "quiet" else []
        done = run("--database-url", f"sqlite:///{folder}/store.db", "db", "upgrade", *quiet,
                   env={"DMA_UPGRADE_DATA_DIR": str(folder / "data")}, terminal=way != "piped")
        assert done.code == 0, done
        if way == "shown":
            assert f"{migrations}/{migrations}" in done.stderr
        else:
            assert_no_progress(done)
        stdouts.append(done.stdout.replace(str(folder).encode(), b"FOLDER"))

    assert stdouts[0] == stdouts[1] == stdouts[2]
    assert stdouts[0].startswith(b"database sqlite:///FOLDER/store.db is at schema ")


def test_db_upgrade_of_a_current_schema_draws_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'current.db'}"
    env = {"DMA_UPGRADE_DATA_DIR": str(tmp_path / "data")}
    assert run("--database-url", url, "db", "upgrade", env=env, terminal=False).code == 0

    again = run("--database-url", url, "db", "upgrade", env=env, terminal=True)

    assert again.code == 0
    assert_no_progress(again)


@pytest.mark.parametrize("command", [("audit", "verify"), ("audit", "export"), ("projections", "rebuild"),
                                     ("db", "upgrade")], ids=" ".join)
def test_every_long_command_offers_quiet(command: tuple[str, ...]) -> None:
    shown = subprocess.run([sys.executable, "-m", "dma_upgrade", *command, "--help"], capture_output=True, text=True,
                           cwd=ROOT, env={**os.environ, "COLUMNS": "200"}, timeout=60, check=False)
    assert shown.returncode == 0, shown.stderr
    assert "--quiet" in shown.stdout and "-q" in shown.stdout
