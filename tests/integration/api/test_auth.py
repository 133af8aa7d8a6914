"""Who may call what: every served route is classified here, and each one is tried without a token, with
a wrong token, with each role below the one it needs and with that role, over real HTTP."""

from __future__ import annotations

import re
from uuid import uuid4

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts

from dma_upgrade.adapters.access.tokens import Role
from tests.integration.api.harness import ApiHarness

Route = tuple[str, str]

VIEWER, OPERATOR, ADMIN = Role.VIEWER, Role.OPERATOR, Role.ADMIN
ROUTE_ROLES: dict[Route, Role | None] = {
    ("GET", "/openapi.json"): None,
    ("GET", "/docs"): None,
    ("GET", "/docs/oauth2-redirect"): None,
    ("GET", "/redoc"): None,
    ("GET", "/metrics"): None,
    ("GET", "/healthz"): None,
    ("GET", "/readyz"): None,
    ("GET", "/"): None,
    ("GET", "/agents"): None,
    ("GET", "/upgrade"): None,
    ("GET", "/packages"): None,
    ("GET", "/settings"): None,
    ("GET", "/audit"): None,
    ("GET", "/static/{name}"): None,
    ("GET", "/api/v1/whoami"): VIEWER,
    ("GET", "/api/v1/clusters"): VIEWER,
    ("GET", "/api/v1/agents"): VIEWER,
    ("POST", "/api/v1/agents"): OPERATOR,
    ("POST", "/api/v1/agents/by-address"): OPERATOR,
    ("GET", "/api/v1/agents/{name}"): VIEWER,
    ("GET", "/api/v1/agents/{name}/facts"): VIEWER,
    ("PUT", "/api/v1/agents/{name}/facts"): OPERATOR,
    ("POST", "/api/v1/agents/{name}/start"): OPERATOR,
    ("PUT", "/api/v1/agents/{name}/ports"): OPERATOR,
    ("GET", "/api/v1/upgrade-path"): VIEWER,
    ("GET", "/api/v1/agents/{name}/history"): VIEWER,
    ("POST", "/api/v1/packages"): OPERATOR,
    ("GET", "/api/v1/packages"): VIEWER,
    ("GET", "/api/v1/packages/history"): VIEWER,
    ("GET", "/api/v1/packages/{reference}"): VIEWER,
    ("POST", "/api/v1/rollouts/plan"): VIEWER,
    ("POST", "/api/v1/rollouts"): OPERATOR,
    ("GET", "/api/v1/rollouts/{rollout_id}"): VIEWER,
    ("POST", "/api/v1/rollouts/{rollout_id}/resolve"): OPERATOR,
    ("POST", "/api/v1/rollouts/{rollout_id}/{command}"): OPERATOR,
    ("GET", "/api/v1/progress"): VIEWER,
    ("GET", "/api/v1/progress/{rollout_id}"): VIEWER,
    ("GET", "/api/v1/progress/{rollout_id}/agents/{agent}"): VIEWER,
    ("GET", "/api/v1/settings"): VIEWER,
    ("PUT", "/api/v1/settings/{key}"): ADMIN,
    ("GET", "/api/v1/audit/verify"): VIEWER,
    ("GET", "/api/v1/audit/export"): VIEWER,
    ("GET", "/api/v1/projections"): VIEWER,
    ("GET", "/api/v1/engines"): VIEWER,
}
"""The role each route needs (None: open to anyone). A route missing here fails the first test."""

SAMPLES = {"name": "dma-1", "agent": "dma-1", "key": "auto-start", "reference": "deadbeef",
           "rollout_id": str(uuid4()), "command": "pause"}


def served_routes(app: FastAPI) -> set[Route]:
    """Every (method, path) the app answers, HEAD aside."""
    return {(method, str(context.path)) for context in iter_route_contexts(app.routes)
            for method in context.methods or () if method != "HEAD"}


def call(client: httpx.Client, route: Route) -> httpx.Response:
    method, path = route
    url = path.replace("/static/{name}", "/static/progress.js")
    url = re.sub(r"\{(\w+)\}", lambda m: SAMPLES[m.group(1)], url)
    return client.request(method, url, json={} if method in ("POST", "PUT") else None)


def protected(api: ApiHarness) -> list[tuple[Route, Role]]:
    return [(route, role) for route, role in ROUTE_ROLES.items()
            if role is not None and route in served_routes(api.app)]


def assert_refused(response: httpx.Response, status: int, route: Route) -> None:
    assert response.status_code == status, (route, response.status_code, response.text)
    body = response.json()
    assert body["error"] == {401: "unauthorized", 403: "forbidden"}[status], (route, body)
    assert body["detail"], route


def test_every_served_route_is_classified_and_every_classified_route_is_served(api: ApiHarness) -> None:
    served = served_routes(api.app)
    assert served - ROUTE_ROLES.keys() == set(), "classify the new routes in ROUTE_ROLES"
    assert ROUTE_ROLES.keys() - served == set(), "remove the routes no longer served from ROUTE_ROLES"


def test_every_protected_route_answers_401_without_a_token_and_changes_nothing(api: ApiHarness) -> None:
    head = api.head()
    anonymous = api.client(None)
    for route, _ in protected(api):
        response = call(anonymous, route)
        assert_refused(response, 401, route)
        assert response.headers["WWW-Authenticate"] == "Bearer"
    assert api.head() == head


@pytest.mark.parametrize("authorization", ["Bearer not-a-configured-token", "Basic dmVyYTpwYXNzd29yZA==",
                                           "Bearer", "token-without-a-scheme"])
def test_every_protected_route_answers_401_to_a_wrong_token_and_changes_nothing(api: ApiHarness,
                                                                                authorization: str) -> None:
    head = api.head()
    wrong = api.anonymous(authorization)
    for route, _ in protected(api):
        assert_refused(call(wrong, route), 401, route)
    assert api.head() == head


def test_every_protected_route_answers_403_to_each_role_below_the_one_it_needs(api: ApiHarness) -> None:
    head = api.head()
    refused = 0
    for route, needed in protected(api):
        for role in (r for r in Role if r < needed):
            response = call(api.client(role), route)
            assert_refused(response, 403, route)
            assert needed.label in response.json()["detail"]
            refused += 1
    assert refused > 0
    assert api.head() == head


def test_every_protected_route_lets_its_role_and_the_roles_above_it_through(api: ApiHarness) -> None:
    for route, needed in protected(api):
        for role in (r for r in Role if r >= needed):
            response = call(api.client(role), route)
            assert response.status_code not in (401, 403), (route, role, response.text)
            assert response.status_code < 500, (route, role, response.text)


def test_open_routes_answer_without_a_token(api: ApiHarness) -> None:
    anonymous = api.client(None)
    for route, role in ROUTE_ROLES.items():
        if role is None and route in served_routes(api.app):
            response = call(anonymous, route)
            assert response.status_code == 200, (route, response.status_code, response.text)


def test_a_body_from_a_caller_without_a_valid_token_is_refused_before_it_is_read(api: ApiHarness) -> None:
    head = api.head()
    for client in (api.client(None), api.anonymous("Bearer not-a-configured-token")):
        for method, path in [("POST", "/api/v1/agents"), ("PUT", "/api/v1/settings/reboot"),
                             ("POST", "/api/v1/packages")]:
            response = client.request(method, path, content=b"{not even json",
                                      headers={"content-type": "application/json"})
            assert_refused(response, 401, (method, path))
    assert api.head() == head


def test_a_revoked_token_is_refused_at_once(api: ApiHarness) -> None:
    viewer = api.client(Role.VIEWER)
    assert viewer.get("/api/v1/agents").status_code == 200
    api.token_file.revoke("vera-viewer")
    assert_refused(viewer.get("/api/v1/agents"), 401, ("GET", "/api/v1/agents"))
