"""The API's own bodies (an error, readiness, a setting's new value, an agent to add by address); the data shapes
it shares with the command line are in ``adapters/shapes``."""

from __future__ import annotations

from pydantic import Field

from dma_upgrade.adapters.shapes.models import ProjectionStatusOut, Shape
from dma_upgrade.engine.addresses import MAX_ADDRESS_LENGTH


class ApiModel(Shape):
    """A body only the API has (the command line never renders it): unknown fields are refused."""


class ErrorOut(ApiModel):
    """Every 4xx/5xx the product raises on purpose: which kind of problem, and a one-line message."""

    error: str = Field(description="the kind of problem, e.g. not_found, conflict, invalid_input")
    detail: str


class AgentByAddressIn(ApiModel):
    """An agent to add by its IP address (or host name): it is asked who it is."""

    address: str = Field(max_length=MAX_ADDRESS_LENGTH)


class SettingIn(ApiModel):
    """The new value of a setting."""

    value: str = Field(max_length=100)


class ReadinessOut(ApiModel):
    """Whether the server can serve: the database answers and no projection is stopped or too far behind."""

    ready: bool
    database: bool
    reasons: list[str]
    projections: list[ProjectionStatusOut]
