"""``--output table|json``: the one option every read command takes, and the one way JSON is printed.

The JSON is the API's: a shape (or a list of shapes) from ``adapters/shapes`` dumped as ``model_dump(mode="json")``
would dump it, one document on standard output and nothing else there (``progress --follow``: one per line).
"""

from __future__ import annotations

import json
import os
import sys
from enum import StrEnum
from typing import Annotated

import typer
from pydantic_core import to_jsonable_python

from dma_upgrade.adapters.cli.errors import fail


class OutputFormat(StrEnum):
    """How a read command prints what it read."""

    TABLE = "table"
    JSON = "json"


def _parse_output(value: str) -> OutputFormat:
    """``--output``'s value, or exit 2 with one error line naming the choices."""
    try:
        return OutputFormat(value.lower())
    except ValueError:
        raise fail(f"--output must be table or json, got {value!r}", 2) from None


Output = Annotated[OutputFormat, typer.Option(
    "--output", parser=_parse_output, metavar="table|json",
    help="table (for people) or json (the API's shapes, one document)")]
"""The ``--output`` option of a read command."""

JsonAlias = Annotated[bool, typer.Option(
    "--json", help="the same as --output json")]
"""The ``--json`` option of a read command: an alias of ``--output json``."""


def wants_json(output: OutputFormat, json_alias: bool) -> bool:
    """Whether the command prints JSON: ``--output json`` or ``--json``."""
    return json_alias or output is OutputFormat.JSON


def json_line(document: object) -> str:
    """``document`` (a shape, a list of shapes, or plain JSON-ready data) as one line of JSON (no newline)."""
    return json.dumps(to_jsonable_python(document), ensure_ascii=False)


def print_json(document: object) -> None:
    """Print ``document`` as one JSON document on stdout."""
    print_line(json_line(document))


def print_line(line: str) -> None:
    """Print ``line`` on stdout and flush it (a reader of JSON lines gets each as it is printed)."""
    try:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
    except BrokenPipeError:  # the reader stopped early (``| head``): no traceback, and no second error at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise typer.Exit(1) from None
