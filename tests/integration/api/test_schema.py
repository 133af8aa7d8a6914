"""Schemathesis against the OpenAPI schema of a running server (on a SQLite file, then on PostgreSQL, with
agents, a package and a rollout, an admin token): for every operation, valid and invalid requests never get
a 500, and every response matches the status codes, content types, headers and bodies the schema documents."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.core.transport import Response
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from dma_upgrade.adapters.access.tokens import Role
from tests.conftest import FakeClock
from tests.integration.api.harness import ApiHarness

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance]
"""Not ``negative_data_rejection``: the admin token goes with every request, and unknown query parameters
are ignored (as HTTP APIs do), so "invalid" requests of those two kinds rightly succeed."""
AGENT_FAILED_CHECKS = [check for check in CHECKS if check is not not_a_server_error]
"""For a 502 ``agent_failed``: the documented answer when an address names no agent (none runs here)."""
EXAMPLES = 8
"""Per operation and generation mode: about 30 operations, so a few hundred requests (well under a minute)."""


@pytest.fixture
def served(db_url: str, clock: FakeClock, tmp_path: Path) -> Iterator[ApiHarness]:
    api = ApiHarness(db_url, clock, tmp_path)
    api.add_agents()
    api.upload_package()
    api.start_rollout(start_at="2099-01-01T00:00:00Z")
    yield api
    api.close()


Case = schemathesis.Case[Any]


def exercise(case_strategy: st.SearchStrategy[Case], call: Callable[[Case], None]) -> None:
    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @given(case_strategy)
    def run(case: Case) -> None:
        call(case)

    run()


def _agent_failed(response: Response) -> bool:
    if response.status_code != 502:
        return False
    body = response.json()
    return isinstance(body, dict) and body.get("error") == "agent_failed"


def test_no_operation_answers_500_or_off_its_schema(served: ApiHarness) -> None:
    schema = schemathesis.openapi.from_url(f"{served.server.url}/openapi.json")
    headers = {"Authorization": f"Bearer {served.tokens[Role.ADMIN]}"}
    session = requests.Session()
    failures: list[str] = []
    operations = 0

    def call(case: Case) -> None:
        response = case.call(base_url=served.server.url, session=session, headers=headers)
        checks = AGENT_FAILED_CHECKS if _agent_failed(response) else CHECKS
        case.validate_response(response, checks=checks, headers=headers)

    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result
        operation = result.ok()
        operations += 1
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                exercise(operation.as_strategy(generation_mode=mode), call)
            except Unsatisfiable:
                assert mode is GenerationMode.NEGATIVE  # nothing to make invalid: no parameter, no body
            except (Exception, BaseExceptionGroup) as failure:  # every operation is tried; all failures reported
                failures.append(f"{operation.label} ({mode.value}): {failure}")

    session.close()
    assert operations >= 25
    assert not failures, "\n\n".join(failures)
