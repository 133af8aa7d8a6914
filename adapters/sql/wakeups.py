"""Wake-ups: PostgreSQL's LISTEN/NOTIFY as a hint that there is new work, with polling as the guarantee.

Appends to rollout streams (a new rollout, a pause, a cancel, a retry) and handed-out upgrades send a
notification on ``CHANNEL`` in their transaction, so it is delivered at commit. Each engine process
listens on one connection of its own and wakes its loops; a lost notification (the listener was
reconnecting) only means the next poll finds the work.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

import psycopg
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from dma_upgrade.adapters.sql.database import first_line

CHANNEL = "dma_upgrade"
_log = logging.getLogger("dma_upgrade.wakeups")


def notify(conn: sa.Connection) -> None:
    """Send a wake-up on ``CHANNEL`` when ``conn``'s transaction commits (PostgreSQL only)."""
    conn.execute(sa.select(sa.func.pg_notify(CHANNEL, "")))


class Wakeup:
    """A loop's alarm: ``wait`` returns after ``timeout`` or as soon as someone calls ``wake``."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def wake(self) -> None:
        """Make the current or next ``wait`` return at once."""
        self._event.set()

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for a wake-up; True if woken."""
        woken = self._event.wait(timeout)
        self._event.clear()
        return woken


class PgListener:
    """Listens on ``CHANNEL`` on a connection of its own and wakes every given ``Wakeup`` per notification."""

    def __init__(self, engine: Engine, wakeups: Sequence[Wakeup], *, retry_seconds: float = 1.0) -> None:
        self._conninfo = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._wakeups = wakeups
        self._retry_seconds = retry_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._listen, name="listen", daemon=True)
        self.listening = threading.Event()
        """Set while the listener is connected (tests wait for it before notifying)."""

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _listen(self) -> None:
        while not self._stop.is_set():
            try:
                with psycopg.connect(self._conninfo, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.listening.set()
                    while not self._stop.is_set():
                        for _ in conn.notifies(timeout=self._retry_seconds):
                            for wakeup in self._wakeups:
                                wakeup.wake()
            except psycopg.Error as error:
                _log.warning("not listening for wake-ups (%s); polling only until it reconnects", first_line(error))
            self.listening.clear()
            self._stop.wait(self._retry_seconds)
