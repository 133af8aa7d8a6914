"""Upgrades folded from one read of the upgrade streams, for an engine that takes up many at once."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from uuid import UUID

from dma_upgrade.engine.agent_upgrade import UPGRADE_STREAMS, AgentUpgrade, upgrade_stream_id
from dma_upgrade.engine.events import Event
from dma_upgrade.engine.service import UpgradeService


class PreloadedUpgrades:
    """Each wanted upgrade is folded from a single read of the upgrade category and handed out once.

    An upgrade not preloaded, or asked for a second time, is read from its own stream. A preloaded
    upgrade may have been written to since it was read; the engine's appends name the version they
    saw, so such an upgrade is reloaded on the conflict, never acted on from stale state.
    """

    def __init__(self, service: UpgradeService) -> None:
        self._service = service
        self._loaded: dict[UUID, AgentUpgrade] = {}
        self._lock = threading.Lock()

    def load(self, upgrade_ids: Iterable[UUID]) -> None:
        """Fold the streams of ``upgrade_ids`` from one pass over the upgrade category."""
        wanted = {upgrade_stream_id(upgrade_id): upgrade_id for upgrade_id in upgrade_ids}
        if not wanted:
            return
        streams: dict[UUID, list[Event]] = {}
        for recorded in self._service.store.read_category(UPGRADE_STREAMS):
            upgrade_id = wanted.get(recorded.stream_id)
            if upgrade_id is not None:
                streams.setdefault(upgrade_id, []).append(recorded.event)
        folded = {upgrade_id: AgentUpgrade.fold(events) for upgrade_id, events in streams.items()}
        with self._lock:
            self._loaded.update(folded)

    def take(self, upgrade_id: UUID) -> AgentUpgrade:
        """The preloaded upgrade (once), otherwise the upgrade as its stream holds it now."""
        with self._lock:
            upgrade = self._loaded.pop(upgrade_id, None)
        return upgrade if upgrade is not None else self._service.upgrade(upgrade_id)
