"""A projection worker for the crash test: catch every projection up with the log, in small batches.

Run from the repository root: ``python tests/e2e/projection_worker.py DATABASE_URL BATCH_SIZE SEED``.
It connects and warms up (first queries compiled), prints ``ready`` (so the test can time its kill from
there), then calls ``ProjectionRunner.catch_up`` on every projection, in an order shuffled by SEED so kills
land in each of them, until none has anything left to apply; then it prints ``done`` and exits 0.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from dma_upgrade.adapters.clock import SystemClock
from dma_upgrade.adapters.sql.database import create_db_engine
from dma_upgrade.adapters.sql.event_store import SqlEventStore
from dma_upgrade.adapters.sql.projection_runner import ProjectionRunner
from dma_upgrade.adapters.sql.read_models import sql_table
from dma_upgrade.engine.catalog import default_codec
from dma_upgrade.projections.catalog import all_projections


def main(url: str, batch_size: int, seed: int) -> int:
    engine = create_db_engine(url)
    clock = SystemClock()
    store = SqlEventStore(engine, default_codec(), clock)
    runner = ProjectionRunner(engine, store, clock, all_projections(), batch_size=batch_size)
    next(iter(store.read_all(page_size=batch_size)), None)
    runner.status()
    with engine.connect() as conn:
        for projection in runner.projections.values():
            for spec in projection.tables:
                conn.execute(sa.select(sql_table(spec)).limit(1)).first()
    names = list(runner.projections)
    random.Random(seed).shuffle(names)
    print("ready", flush=True)
    while any(runner.catch_up(names).values()):
        pass
    print("done", flush=True)
    engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
