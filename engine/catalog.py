"""The catalogue of every event type the product stores, with the upcasters of older versions."""

from __future__ import annotations

from dma_upgrade.engine.agent_events import AGENT_EVENTS, AGENT_UPCASTERS
from dma_upgrade.engine.codec import EventCodec
from dma_upgrade.engine.rollout_events import ROLLOUT_EVENTS
from dma_upgrade.engine.upgrade_events import UPGRADE_EVENTS, UPGRADE_UPCASTERS


def default_codec() -> EventCodec:
    """A codec that knows every event type and every upcaster."""
    return EventCodec((*AGENT_EVENTS, *UPGRADE_EVENTS, *ROLLOUT_EVENTS), {**AGENT_UPCASTERS, **UPGRADE_UPCASTERS})
