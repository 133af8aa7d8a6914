"""The real ``Waiter``: time passes on the wall clock, and the process's shutdown cuts every wait short."""

from __future__ import annotations

import threading
import time


class RealWaiter:
    """Waits in real time; a set ``stop`` (the process's shutdown) ends any wait at once."""

    def __init__(self, stop: threading.Event | None = None) -> None:
        self._stop = stop

    def wait(self, seconds: float) -> None:
        if self._stop is None:
            time.sleep(seconds)
        else:
            self._stop.wait(seconds)
