"""One thread per sink, so a slow or unreachable sink only loses its own copy of the events.

Each worker holds at most `backlog` events waiting for its sink. A sink that raises is logged once per outage and
then skipped (its batches dropped and counted) for a back-off that doubles up to a ceiling;
the next batch after it is a retry. A worker whose backlog is full drops the new batch (counted).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Sequence

from shipyard.core.events import PredictionEvent, Sink
from shipyard.monitoring.eventlog import metrics as m
from shipyard.monitoring.eventlog.metrics import EventLogMetrics

log = logging.getLogger(__name__)

Batch = Sequence[PredictionEvent]
IDLE_TICK_S = 1.0


class SinkWorker:
    def __init__(
        self,
        sink: Sink,
        metrics: EventLogMetrics,
        *,
        backlog: int,
        retry_s: tuple[float, float] = (1.0, 30.0),
    ) -> None:
        self.sink = sink
        self.name = sink.name
        self._metrics = metrics
        self._backlog = backlog
        self._pending = 0  # events queued for this sink, guarded by _lock
        self._lock = threading.Lock()
        self._batches: queue.SimpleQueue[Batch | None] = queue.SimpleQueue()
        self._retry_min, self._retry_max = retry_s
        self._delay = self._retry_min
        self._retry_at = 0.0
        self._failing = False
        self._lost_in_outage = 0
        self._deadline = float("inf")
        self._thread = threading.Thread(
            target=self._run, name=f"shipyard-eventlog-{self.name}", daemon=True
        )
        self._thread.start()

    def offer(self, batch: Batch) -> None:
        with self._lock:
            if self._pending + len(batch) > self._backlog:
                self._metrics.dropped(m.SINK_BACKLOG, self.name, len(batch))
                return
            self._pending += len(batch)
        self._batches.put(batch)

    def stop(self, deadline: float) -> None:
        """Write what is queued until `deadline` (monotonic), then close the sink."""
        self._deadline = deadline
        self._batches.put(None)

    def join(self, deadline: float) -> None:
        self._thread.join(max(0.0, deadline - time.monotonic()))
        if self._thread.is_alive():
            log.warning("prediction log: sink %s did not finish in time", self.name)

    def _run(self) -> None:
        while (batch := self._next()) is not None:
            with self._lock:
                self._pending -= len(batch)
            if time.monotonic() > self._deadline:
                self._metrics.dropped(m.SHUTDOWN, self.name, len(batch))
            else:
                self._write(batch)
        try:
            self.sink.close()
        except Exception as exc:
            log.warning("prediction log: closing sink %s failed: %s", self.name, exc)

    def _next(self) -> Batch | None:
        """The next batch; while none comes, give the sink its idle `tick()` if it has one
        (the Parquet sink finishes parts that reached their age with no traffic)."""
        while True:
            try:
                return self._batches.get(timeout=IDLE_TICK_S)
            except queue.Empty:
                tick = getattr(self.sink, "tick", None)
                if tick is not None:
                    try:
                        tick()
                    except Exception as exc:  # like a failed write: log it and go on
                        log.warning("prediction log: sink %s tick failed: %s", self.name, exc)

    def _write(self, batch: Batch) -> None:
        now = time.monotonic()
        if self._failing and now < self._retry_at:
            self._lost_in_outage += len(batch)
            self._metrics.dropped(m.SINK_UNAVAILABLE, self.name, len(batch))
            return
        try:
            self.sink.write(batch)
        except Exception as exc:
            self._metrics.dropped(m.SINK_ERROR, self.name, len(batch))
            self._lost_in_outage += len(batch)
            if not self._failing:
                log.warning(
                    "prediction log: sink %s failed, dropping its events until it recovers: %s: %s",
                    self.name,
                    type(exc).__name__,
                    exc,
                )
                self._failing = True
            else:
                self._delay = min(self._delay * 2, self._retry_max)
            self._retry_at = now + self._delay
            return
        self._metrics.written(self.name, len(batch))
        if self._failing:
            log.warning(
                "prediction log: sink %s recovered; %d events were dropped during the outage",
                self.name,
                self._lost_in_outage,
            )
            self._failing = False
            self._lost_in_outage = 0
            self._delay = self._retry_min
