"""One error tree and one table: every error class of the product is drawn once (``engine/errors.py``, or the edges'
subtree in ``adapters/errors.py``) under its real parent, has one row of the one table, and is answered by the API
and the CLI from that row alike (locally and through ``--server``)."""

from __future__ import annotations

import asyncio
import importlib
import pkgutil
import re

import httpx
import pytest
from fastapi import FastAPI

import dma_upgrade
from dma_upgrade.adapters import errors as edge_errors
from dma_upgrade.adapters.api.errors import ERROR_RESPONSES, install_error_handlers
from dma_upgrade.adapters.cli.context import Server
from dma_upgrade.adapters.cli.errors import exit_code_for
from dma_upgrade.adapters.cli.remote import refusal
from dma_upgrade.adapters.errors import (
    INTERNAL_ERROR,
    KINDS,
    OUTCOMES,
    UNAVAILABLE,
    ServerRefusal,
    answered,
    for_status,
    outcome_of,
)
from dma_upgrade.engine import errors as engine_errors
from dma_upgrade.engine.errors import DmaUpgradeError

SERVER = Server(url="http://127.0.0.1:8600", token=None, given_as="--server")

PINNED: dict[str, tuple[int, str, int]] = {
    "DmaUpgradeError": (500, "internal_error", 1),
    "ConcurrencyConflict": (409, "conflict", 4),
    "LeaseLost": (500, "internal_error", 1),
    "InvalidTransition": (409, "illegal_transition", 5),
    "EventStoreError": (500, "store_error", 8),
    "UnknownEventType": (500, "store_error", 8),
    "EventDecodeError": (500, "store_error", 8),
    "DuplicateEventId": (500, "store_error", 8),
    "StoreUnavailable": (503, "unavailable", 6),
    "TokenFileUnreadable": (503, "unavailable", 6),
    "SchemaNotMigrated": (503, "schema_not_migrated", 7),
    "NotFound": (404, "not_found", 3),
    "Conflict": (409, "conflict", 4),
    "InvalidInput": (422, "invalid_input", 2),
    "InvalidVersion": (422, "invalid_input", 2),
    "PackageRejected": (422, "invalid_input", 2),
    "UpgradePathRefused": (422, "invalid_input", 2),
    "PayloadTooLarge": (413, "too_large", 2),
    "AgentStepFailed": (502, "agent_failed", 1),
    "AgentOutcomeUnknown": (502, "agent_failed", 1),
    "AgentUnreachable": (502, "agent_failed", 1),
    "ProjectionStopped": (503, "unavailable", 6),
    "ServerBusy": (503, "unavailable", 6),
    "ServerUnreachable": (503, "unavailable", 6),
}
"""The status, kind and exit code of each class, as the API and the CLI have answered them (pinned)."""


def _import_the_product() -> None:
    for module in pkgutil.walk_packages(dma_upgrade.__path__, "dma_upgrade."):
        if ".migrations" in module.name or module.name.endswith("__main__"):
            continue
        importlib.import_module(module.name)


def _subclasses(cls: type[DmaUpgradeError]) -> set[type[DmaUpgradeError]]:
    found = set()
    for sub in cls.__subclasses__():
        found |= {sub, *_subclasses(sub)}
    return found


@pytest.fixture(scope="module")
def tree() -> dict[str, type[DmaUpgradeError]]:
    """Every error class of the product, by name (each name once)."""
    _import_the_product()
    classes = [c for c in {DmaUpgradeError, *_subclasses(DmaUpgradeError)} if c.__module__.startswith("dma_upgrade.")]
    by_name = {c.__name__: c for c in classes}
    assert len(by_name) == len(classes), "two error classes share a name"
    return by_name


def drawing(docstring: str | None) -> list[tuple[str, str | None]]:
    """The tree drawn in a module docstring: each node with its drawn parent (None for the root)."""
    lines = (docstring or "").splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "DmaUpgradeError")
    root = lines[start].index("DmaUpgradeError")
    nodes: list[tuple[str, str | None]] = [("DmaUpgradeError", None)]
    path = ["DmaUpgradeError"]
    for line in lines[start + 1:]:
        node = re.search(r"[├└]── (\w+)", line)
        if node is None:
            break
        depth, rest = divmod(node.start(1) - root, 4)
        assert rest == 0 and 1 <= depth <= len(path), f"a node off the tree's grid: {line!r}"
        path[depth:] = [node.group(1)]
        nodes.append((node.group(1), path[depth - 1]))
    return nodes


def test_every_error_class_is_drawn_once_under_its_real_parent(tree: dict[str, type[DmaUpgradeError]]) -> None:
    engine_drawn = drawing(engine_errors.__doc__)
    edge_drawn = drawing(edge_errors.__doc__)

    for name, parent in engine_drawn + edge_drawn:
        assert name in tree, f"{name} is drawn but is no error class"
        if parent is not None:
            assert tree[name].__base__ is tree[parent], f"{name} is drawn under {parent}"
    introduced = [name for name, _ in engine_drawn] + [
        name for name, _ in edge_drawn if tree[name].__module__.startswith("dma_upgrade.adapters")]
    assert sorted(introduced) == sorted(tree), "each class is drawn once: the engine's here, the edges' beside it"
    assert all(tree[name].__module__.startswith("dma_upgrade.engine") for name, _ in engine_drawn)


def test_every_error_class_has_one_row_of_the_table(tree: dict[str, type[DmaUpgradeError]]) -> None:
    assert set(OUTCOMES) == set(tree.values()) - {ServerRefusal}  # a refusal answers as the kind the server named
    assert all(outcome in KINDS for outcome in OUTCOMES.values())
    answers = {cls.__name__: (o.status, o.kind, o.exit_code) for cls, o in OUTCOMES.items()}
    assert answers == PINNED


def test_each_kind_is_one_row_and_the_drawn_table_is_the_table() -> None:
    assert len({o.kind for o in KINDS}) == len(KINDS)
    assert [o.status for o in KINDS] == sorted(o.status for o in KINDS)
    drawn = re.findall(r"^ {4}(\d{3}) +(\w+) +(\d+) ", edge_errors.__doc__ or "", re.MULTILINE)
    assert [(int(status), kind, int(code)) for status, kind, code in drawn] == [
        (o.status, o.kind, o.exit_code) for o in KINDS]


def test_an_answer_of_the_api_stands_for_its_kind_else_the_first_kind_of_its_status() -> None:
    for outcome in KINDS:
        assert answered(outcome.kind, 418) is outcome
        assert answered(None, outcome.status) is for_status(outcome.status)
    assert answered("unavailable", 500) is UNAVAILABLE
    assert for_status(503) is UNAVAILABLE and for_status(500) is INTERNAL_ERROR
    assert answered("no such kind", 418) is INTERNAL_ERROR
    assert answered(["not", "a", "kind"], 418) is INTERNAL_ERROR


def test_a_class_outside_the_table_answers_as_the_nearest_class_it_derives_from() -> None:
    class Later(engine_errors.NotFound):
        pass

    assert outcome_of(Later("x")) is OUTCOMES[engine_errors.NotFound]


def test_the_routes_document_the_statuses_of_the_table() -> None:
    assert set(ERROR_RESPONSES) == {400, 401, 403, 404, 409, 413, 422, 502, 503}
    assert ERROR_RESPONSES[409]["description"] == "conflict or illegal_transition"
    assert "headers" in ERROR_RESPONSES[401]


def _instance(cls: type[DmaUpgradeError]) -> DmaUpgradeError:
    error = cls.__new__(cls)
    Exception.__init__(error, f"a {cls.__name__} happened")
    return error


def test_the_api_and_the_cli_answer_each_class_from_its_row_locally_and_through_the_server() -> None:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/raise/{name}")
    def raising(name: str) -> None:
        raise _instance(next(cls for cls in OUTCOMES if cls.__name__ == name))

    async def ask() -> list[httpx.Response]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as client:
            return [await client.get(f"/raise/{cls.__name__}") for cls in OUTCOMES]

    for (cls, outcome), answer in zip(OUTCOMES.items(), asyncio.run(ask()), strict=True):
        assert (answer.status_code, answer.json()) == (
            outcome.status, {"error": outcome.kind, "detail": f"a {cls.__name__} happened"})
        local = exit_code_for(_instance(cls))
        through_the_server = refusal(answer, SERVER)
        assert local == exit_code_for(through_the_server) == outcome.exit_code, cls.__name__
        assert str(through_the_server) == f"a {cls.__name__} happened"
