"""The global ``--server`` option, in process: commands that need this machine refuse it, and the API's
error answers map back to the command line's exit codes (the real server is in tests/e2e/test_cli_remote.py)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from dma_upgrade.adapters.cli.context import Server
from dma_upgrade.adapters.cli.errors import exit_code_for
from dma_upgrade.adapters.cli.main import app
from dma_upgrade.adapters.cli.remote import refusal

LOCAL_ONLY = {
    "db upgrade": (),
    "serve": (),
    "recover": ("--dry-run",),
    "tokens list": (),
    "projections run": (),
    "projections rebuild": (),
    "packages build": ("--version", "10.4.9.0-14794"),
    "states": (),
    "demo": (),
    "agent-sim": ("--port", "1", "--name", "x"),
}

SERVER = Server(url="http://127.0.0.1:8600", token=None, given_as="--server")


@pytest.mark.parametrize("command", LOCAL_ONLY)
def test_a_command_local_by_nature_refuses_a_server_with_one_line_and_touches_nothing(
        command: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["--server", "http://127.0.0.1:9", *command.split(), *LOCAL_ONLY[command]],
                                env={"DMA_UPGRADE_DATA_DIR": str(tmp_path)})
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().splitlines() == [
        f"error: `dma-upgrade {command}` works on this machine only, not through an API server: "
        f"run it without --server"]
    assert not any(tmp_path.iterdir())


def test_a_server_from_the_environment_is_named_as_such_when_refused(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["tokens", "list"], env={"DMA_UPGRADE_SERVER": "http://127.0.0.1:9",
                                                              "DMA_UPGRADE_DATA_DIR": str(tmp_path)})
    assert result.exit_code == 2
    assert "run it without DMA_UPGRADE_SERVER" in result.stderr


def test_a_server_that_is_not_an_http_url_is_refused_with_exit_2() -> None:
    result = CliRunner().invoke(app, ["--server", "localhost:8600", "agents", "list"])
    assert result.exit_code == 2
    assert "--server must be an http:// or https:// URL" in result.stderr


@pytest.mark.parametrize(("status", "kind", "code"), [
    (404, "not_found", 3),
    (409, "conflict", 4),
    (409, "illegal_transition", 5),
    (422, "invalid_input", 2),
    (413, "too_large", 2),
    (503, "unavailable", 6),
    (500, "store_error", 8),
    (401, "unauthorized", 10),
    (403, "forbidden", 10),
])
def test_an_error_answer_exits_with_the_code_of_the_error_it_names(status: int, kind: str, code: int) -> None:
    error = refusal(httpx.Response(status, json={"error": kind, "detail": "what went wrong"}), SERVER)
    assert exit_code_for(error) == code
    assert str(error).startswith("what went wrong")


def test_a_refused_token_says_how_to_give_one() -> None:
    error = refusal(httpx.Response(401, json={"error": "unauthorized", "detail": "a bearer token is required"}),
                    SERVER)
    assert str(error) == "a bearer token is required (give a token with --token or DMA_UPGRADE_TOKEN)"


def test_an_answer_without_the_error_body_maps_by_its_status() -> None:
    assert exit_code_for(refusal(httpx.Response(404, text="Not Found"), SERVER)) == 3
    unknown = refusal(httpx.Response(502, text="<html>bad gateway</html>"), SERVER)
    assert exit_code_for(unknown) == 1
    assert str(unknown) == "http://127.0.0.1:8600 answered 502 Bad Gateway"
