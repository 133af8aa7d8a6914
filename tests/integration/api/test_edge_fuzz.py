"""Fuzzing the edges: names, addresses, versions and cluster ids, hostile or not, through the API (a real
server) and the command line (in process, on the same database). Every input gives success or the documented
error (one line, its status or exit code), never a 500, a traceback, or a store left half-written.

``DMA_UPGRADE_FUZZ_EXAMPLES`` raises the number of examples per test (a longer hunt than CI's).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from dma_upgrade.adapters.access.tokens import Role
from dma_upgrade.adapters.cli.main import app
from tests.conftest import FakeClock
from tests.integration.api.harness import ApiHarness

EXAMPLES = int(os.environ.get("DMA_UPGRADE_FUZZ_EXAMPLES", "60"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                suppress_health_check=list(HealthCheck))

TRICKY = ["", " ", "\n", "\r\n", "\t", "\x00", "\x1b[31m", "\u202e", "\ud800", "\ufeff", "é", "名", "..", "/",
          "\\", "%00", "%2F", "'", '"', "=cmd|' /C calc'!A0", "a" * 300, "-", "--help", "@", "#", "?", ":"]
"""Pieces hostile input is made of: control characters, bidi overrides, a lone surrogate, separators, escapes."""


def _spliced(core: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """``core``, or ``core`` with a tricky piece before or after it (near-valid input is the interesting kind)."""
    piece = st.sampled_from(TRICKY)
    return st.one_of(core, st.builds(lambda p, c: p + c, piece, core), st.builds(lambda c, p: c + p, core, piece))


NAMES = _spliced(st.one_of(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,20}", fullmatch=True), st.text(max_size=40)))
HOSTS = st.one_of(st.sampled_from(["10.0.0.9", "agent.example.com", "[::1]", "127.0.0.1", "169.254.169.254",
                                   "[fe80::1]", "localhost", "user:pw@host", "file:///etc/passwd",
                                   "http://h/x", "h/admin?x=1#y", "::1", "999.1.1.1"]),
                  st.from_regex(r"[a-z0-9.-]{1,30}", fullmatch=True))
ADDRESSES = _spliced(st.one_of(HOSTS, st.builds(lambda h, p: f"{h}:{p}", HOSTS, st.integers(-5, 70_000)),
                               st.text(max_size=60)))
VERSIONS = _spliced(st.one_of(st.sampled_from(["10.4.9.0-14794", "10.5.5.0(CU0)-15664", "10.0.0 CU19",
                                               "10.0.0.0-9454 CU20", "8.0.6.3-2304-20140407-release"]),
                              st.from_regex(r"[0-9]{1,25}(\.[0-9]{1,25}){0,4}(-[0-9]{1,12})?( CU[0-9]{1,20})?",
                                            fullmatch=True),
                              st.text(max_size=40)))
CLUSTERS = st.one_of(st.none(), _spliced(st.one_of(st.sampled_from(["north", "west"]), st.text(max_size=40))))


@pytest.fixture
def served(db_url: str, clock: FakeClock, tmp_path: Path) -> Iterator[ApiHarness]:
    api = ApiHarness(db_url, clock, tmp_path)
    yield api
    api.close()


def _post(client: httpx.Client, path: str, body: dict[str, object]) -> httpx.Response:
    """POST ``body`` as JSON with every non-ASCII character escaped, so a lone surrogate reaches the server."""
    return client.post(path, content=json.dumps(body), headers={"Content-Type": "application/json"})


def _one_line_error(body: object) -> None:
    assert isinstance(body, dict) and {"error", "detail"} <= body.keys(), body
    assert "\n" not in str(body["detail"]) and "Traceback" not in str(body["detail"]), body


def test_registering_any_agent_through_the_api_succeeds_or_is_refused_in_one_line(served: ApiHarness) -> None:
    operator = served.client(Role.OPERATOR)

    @FUZZ
    @given(NAMES, ADDRESSES, VERSIONS, CLUSTERS)
    def register(name: str, address: str, version: str, cluster: str | None) -> None:
        head = served.head()
        response = _post(operator, "/api/v1/agents", {"name": name, "address": address, "version": version,
                                                          "cluster": cluster})
        assert response.status_code in (201, 409, 422), (response.status_code, response.text)
        if response.status_code != 201:
            _one_line_error(response.json())
            assert served.head() == head, "a refused registration appended events"
        looked_up = operator.get(f"/api/v1/agents/{quote(name, safe='', errors='surrogatepass')}")
        assert looked_up.status_code in (200, 404, 405, 422) or looked_up.is_redirect, looked_up.text

    register()


def test_adding_any_address_through_the_api_succeeds_or_is_refused_in_one_line(served: ApiHarness) -> None:
    operator = served.client(Role.OPERATOR)

    @FUZZ
    @given(ADDRESSES)
    def add(address: str) -> None:
        head = served.head()
        response = _post(operator, "/api/v1/agents/by-address", {"address": address})
        # 502: no agent answers there (the documented agent_failed); 503: the agent-call limit is reached.
        assert response.status_code in (201, 409, 422, 502, 503), (response.status_code, response.text)
        if response.status_code != 201:
            _one_line_error(response.json())
            assert served.head() == head, "a refused address appended events"

    add()


def test_a_rollout_of_any_cluster_or_agent_is_planned_or_refused_in_one_line(served: ApiHarness) -> None:
    served.add_agents()
    package = served.upload_package()["sha256"]
    operator = served.client(Role.OPERATOR)

    @FUZZ
    @given(CLUSTERS, st.lists(NAMES, max_size=3), st.lists(ADDRESSES, max_size=2))
    def plan(cluster: str | None, names: list[str], addresses: list[str]) -> None:
        head = served.head()
        response = _post(operator, "/api/v1/rollouts/plan", {"package": package, "cluster": cluster,
                                                                 "agents": names, "addresses": addresses})
        assert response.status_code in (200, 404, 409, 422, 502, 503), (response.status_code, response.text)
        if response.status_code >= 400:
            _one_line_error(response.json())
        assert served.head() == head, "a dry run appended events"

    plan()


def test_registering_any_agent_on_the_command_line_succeeds_or_exits_with_one_line(db_url: str,
                                                                                       tmp_path: Path) -> None:
    runner = CliRunner()
    env = {"DMA_UPGRADE_DATABASE_URL": db_url, "DMA_UPGRADE_DATA_DIR": str(tmp_path / "data"),
           "DMA_UPGRADE_ACTOR": "fuzz"}

    @FUZZ
    @given(NAMES, ADDRESSES, VERSIONS, CLUSTERS)
    def register(name: str, address: str, version: str, cluster: str | None) -> None:
        if "\x00" in name + address + version + (cluster or ""):
            return  # an operating system passes no NUL in a command's arguments
        options = ["--address", address, "--version", version, *(["--cluster", cluster] if cluster is not None else [])]
        result = runner.invoke(app, ["agents", "add", *options, "--", name], env=env)
        assert result.exit_code in (0, 2, 4), (result.exit_code, result.output)
        assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
        assert "Traceback" not in result.output
        if result.exit_code != 0:
            errors = [line for line in result.stderr.splitlines() if line.strip()]
            assert len(errors) <= 1 or "Usage:" in result.stderr, result.stderr

    register()
