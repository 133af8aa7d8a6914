"""The composition root: wires ports to implementations; tests override any of them by keyword."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.engine import Engine

from dma_upgrade.adapters.clock import SystemClock, UuidFactory
from dma_upgrade.adapters.settings import Settings
from dma_upgrade.adapters.sql.database import create_db_engine, ensure_schema, is_sqlite
from dma_upgrade.adapters.sql.event_store import SqlEventStore
from dma_upgrade.adapters.sql.projection_runner import ProjectionRunner
from dma_upgrade.engine.addresses import AddressPolicy
from dma_upgrade.engine.catalog import default_codec
from dma_upgrade.engine.codec import EventCodec
from dma_upgrade.engine.ports import Clock, IdFactory
from dma_upgrade.engine.rollout_events import ROLLOUT_STREAMS
from dma_upgrade.projections.catalog import all_projections


@dataclass
class Container:
    """Everything one process uses, wired once."""

    settings: Settings
    engine: Engine
    codec: EventCodec
    clock: Clock
    ids: IdFactory
    store: SqlEventStore
    projections: ProjectionRunner
    address_policy: AddressPolicy
    """Which IP addresses agents may have (``DMA_UPGRADE_AGENT_NETWORKS``), for the service and the gateway."""

    def close(self) -> None:
        self.engine.dispose()


def bootstrap(settings: Settings | None = None, *, clock: Clock | None = None, ids: IdFactory | None = None,
              codec: EventCodec | None = None, check_schema: bool = True) -> Container:
    """Open the configured database (migrating the embedded default) and wire the services."""
    settings = settings or Settings()
    address_policy = AddressPolicy.from_setting(settings.agent_networks)  # a malformed setting opens nothing
    engine = create_db_engine(settings.resolved_database_url)
    if check_schema:
        try:
            ensure_schema(engine, auto_migrate=is_sqlite(engine))  # embedded SQLite migrates itself
        except Exception:
            engine.dispose()
            raise
    codec = codec or default_codec()
    clock = clock or SystemClock()
    store = SqlEventStore(engine, codec, clock, notify_prefixes=(ROLLOUT_STREAMS,))
    return Container(settings=settings, engine=engine, codec=codec, clock=clock, ids=ids or UuidFactory(),
                     store=store, projections=ProjectionRunner(engine, store, clock, all_projections()),
                     address_policy=address_policy)
