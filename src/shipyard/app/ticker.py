"""A daemon thread calling `tick` every `interval_s` until stopped: the clock of the control
plane's background loops (retraining triggers, monitoring, housekeeping).

A tick that raises is logged and the next one still comes: one bad model, database hiccup or
full disk must not end the loop for the life of the server.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable


class Ticker:
    def __init__(self, name: str, tick: Callable[[], object], log: logging.Logger) -> None:
        self.name = name
        self._tick = tick
        self._log = log
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, interval_s: float) -> None:
        def loop() -> None:
            while not self._stop.wait(interval_s):
                try:
                    self._tick()
                except Exception:
                    self._log.exception("%s tick failed", self.name)

        self._thread = threading.Thread(target=loop, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float | None = None) -> None:
        """No more ticks; with `timeout_s`, wait that long for a tick in progress (it may use
        a registry the caller is about to close)."""
        self._stop.set()
        if timeout_s is not None and self._thread is not None:
            self._thread.join(timeout_s)
