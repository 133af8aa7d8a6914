"""Alembic environment: runs on a connection handed in by ``adapters.sql.database.migrate``
or, from the ``alembic`` command line, on the URL in alembic.ini or DMA_UPGRADE_DATABASE_URL."""

from __future__ import annotations

import os

from alembic import context

from dma_upgrade.adapters.sql.database import create_db_engine
from dma_upgrade.adapters.sql.schema import metadata

config = context.config


def run() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    url = os.environ.get("DMA_UPGRADE_DATABASE_URL") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("set DMA_UPGRADE_DATABASE_URL or sqlalchemy.url in alembic.ini")
    engine = create_db_engine(url)
    with engine.begin() as conn:
        context.configure(connection=conn, target_metadata=metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run()
