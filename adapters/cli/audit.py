"""``dma-upgrade audit``: verifying the hash chain and exporting the audit trail."""

from __future__ import annotations

import contextlib
import io
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, TextIO

import typer

from dma_upgrade.adapters.audit.export import ExportFormat, Selection, atomic_output, parse_rollout, parse_time
from dma_upgrade.adapters.cli.backend import open_backend
from dma_upgrade.adapters.cli.context import out
from dma_upgrade.adapters.cli.errors import fail, reports_errors, stderr
from dma_upgrade.adapters.cli.output import JsonAlias, Output, OutputFormat, print_json, wants_json
from dma_upgrade.adapters.cli.progress_bar import Quiet, progress_bar
from dma_upgrade.adapters.shapes.models import AuditVerifyOut

app = typer.Typer(no_args_is_help=True, help="The tamper-evident audit trail.")


@app.command("verify")
@reports_errors
def audit_verify(ctx: typer.Context,
                 anchor: Annotated[str | None, typer.Option(
                     help="HASH@POSITION from an earlier export: also check the log still holds it")] = None,
                 output: Output = OutputFormat.TABLE, json_alias: JsonAlias = False, quiet: Quiet = False,
                 ) -> None:
    """Walk the SHA-256 hash chain over every event; exit 1 at the first break (with JSON: after printing it).

    On a terminal, its progress is drawn on stderr (not through --server: the server verifies in one request).
    """
    with open_backend(ctx) as backend, progress_bar("verifying", quiet=quiet) as reporter:
        verdict = backend.verify_audit(anchor, reporter)
    as_json = wants_json(output, json_alias)
    if as_json:
        print_json(verdict)
    if not verdict.ok:
        raise fail(verdict.problem or "the audit trail does not verify", 1)
    if not as_json:
        out.print(summary(verdict))


def summary(verdict: AuditVerifyOut) -> str:
    """One line saying what was verified."""
    return f"verified {verdict.verified} events: hash chain intact" + (f", head {verdict.head}" if verdict.head else "")


@app.command("export")
@reports_errors
def audit_export(ctx: typer.Context,
                 export_format: Annotated[str, typer.Option("--format", help="jsonl or csv")],
                 start: Annotated[str | None, typer.Option(
                     "--from", help="keep events recorded at or after this ISO 8601 time or date (UTC if "
                                    "no zone)")] = None,
                 end: Annotated[str | None, typer.Option(
                     "--to", help="keep events recorded before this ISO 8601 time or date (UTC if no "
                                  "zone)")] = None,
                 rollout: Annotated[str | None, typer.Option(
                     help="keep the events of one rollout: its own, its agents' upgrades, its claims")] = None,
                 output: Annotated[str, typer.Option(
                     "--output", "-o", help="file to write (replaced only when complete), or - for "
                                            "standard output")] = "-",
                 quiet: Quiet = False,
                 ) -> None:
    """Export the audit trail as JSON lines or CSV, ending with the anchor of the last event exported.

    Into a file (--output FILE) on a terminal, its progress is drawn on stderr (not through --server: the size of
    the server's export is not known ahead).
    """
    fmt = ExportFormat.parse(export_format)
    selection = Selection(start=parse_time(start, "--from") if start is not None else None,
                          end=parse_time(end, "--to") if end is not None else None,
                          rollout=parse_rollout(rollout) if rollout is not None else None)
    to_file = output != "-"  # the export on standard output may be on this terminal too: no progress over it
    with (_destination(output) as stream, open_backend(ctx) as backend,
          progress_bar("exporting", quiet=quiet or not to_file) as reporter):
        exported = backend.export_audit(fmt, selection, stream, reporter)
    if exported.anchor is None:
        stderr.print("anchor none: no events matched (0 events)", markup=False)
    else:
        stderr.print(f"anchor {exported.anchor} ({exported.exported} events)", markup=False)


@contextlib.contextmanager
def _destination(output: str) -> Iterator[TextIO]:
    if output != "-":
        with atomic_output(Path(output)) as stream:
            yield stream
        return
    stream = sys.stdout
    if isinstance(stream, io.TextIOWrapper):
        stream.reconfigure(encoding="utf-8")
    try:
        yield stream
        stream.flush()
    except BrokenPipeError:
        # The reader went away (``| head``): stop quietly, without a traceback at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise fail("standard output was closed before the export finished", 1) from None
