"""Verifying the hash chain a little at a time: each call walks only the records stored since the last one."""

from __future__ import annotations

import threading

from prometheus_client import CollectorRegistry, Gauge

from dma_upgrade.engine.hashchain import GENESIS_HASH, ChainVerdict, verify_chain
from dma_upgrade.engine.ports import EventStore


class ChainWatch:
    """Goes on verifying the chain from the last verified record, seeded with its hash; feeds two gauges."""

    def __init__(self, store: EventStore, registry: CollectorRegistry, *, page_size: int = 5000) -> None:
        self._store = store
        self._page_size = page_size
        self._lock = threading.Lock()
        self._position = 0
        self._hash = GENESIS_HASH
        self._broken: ChainVerdict | None = None
        self.verified_position = Gauge(
            "dma_upgrade_hash_chain_verified_position",
            "Global position up to which this process has verified the hash chain.", registry=registry)
        self.intact = Gauge(
            "dma_upgrade_hash_chain_intact", "0 once this process found the hash chain broken, else 1.",
            registry=registry)
        self.intact.set(1)

    def verify_new(self) -> ChainVerdict:
        """Verify the records stored since the last call; after a break, keep reporting that break."""
        with self._lock:
            if self._broken is not None:
                return self._broken
            verdict = verify_chain(self._store.read_records(after=self._position, page_size=self._page_size),
                                   after=self._position, previous_hash=self._hash)
            self._position, self._hash = verdict.last_position, verdict.last_hash
            self.verified_position.set(verdict.last_position)
            if not verdict.ok:
                self._broken = verdict
                self.intact.set(0)
            return verdict
