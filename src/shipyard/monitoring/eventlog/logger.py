"""PredictionLogger: the data plane's `EventEmitter`, never blocking the request path.

`emit` is a `put_nowait` into a bounded queue (O(1), safe from an event loop or any thread);
when the queue is full the event is dropped and counted. A background thread collects
batches (up to `batch_size` events or `flush_interval_s` after the first), scrubs them
(`Privacy`) and hands each batch to one worker thread per sink. Serving keeps answering
whatever the sinks do (promise P13).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Collection, Sequence

from prometheus_client import CollectorRegistry

from shipyard.core.errors import InvalidArgument
from shipyard.core.events import PredictionEvent, Sink
from shipyard.monitoring.eventlog import metrics as m
from shipyard.monitoring.eventlog.metrics import EventLogMetrics
from shipyard.monitoring.eventlog.privacy import Privacy
from shipyard.monitoring.eventlog.worker import SinkWorker

log = logging.getLogger(__name__)
YIELD_EVERY = 32  # events scrubbed between GIL hand-backs


class PredictionLogger:
    def __init__(
        self,
        sinks: Sequence[Sink],
        *,
        hash_key: bytes,
        registry: CollectorRegistry | None = None,
        sample_rate: float = 1.0,
        exclude: Collection[str] = (),
        hash_columns: Collection[str] = (),
        subject_column: str | None = None,
        columns: Collection[str] | None = None,
        max_queue: int = 10_000,
        flush_interval_s: float = 1.0,
        batch_size: int = 1000,
        close_timeout_s: float = 10.0,
        retry_s: tuple[float, float] = (1.0, 30.0),
    ) -> None:
        for what, value in (("max_queue", max_queue), ("batch_size", batch_size)):
            if value < 1:
                raise InvalidArgument(f"{what} must be at least 1, got {value}")
        if flush_interval_s <= 0 or close_timeout_s <= 0:
            raise InvalidArgument("flush_interval_s and close_timeout_s must be positive")
        names = [sink.name for sink in sinks]
        if len(set(names)) != len(names):
            raise InvalidArgument(f"sink names must be unique, got {names}")
        self.privacy = Privacy(
            hash_key,
            sample_rate=sample_rate,
            exclude=exclude,
            hash_columns=hash_columns,
            subject_column=subject_column,
            columns=columns,
        )
        self.metrics = EventLogMetrics(registry or CollectorRegistry())
        self._queue: queue.Queue[PredictionEvent] = queue.Queue(maxsize=max_queue)
        self._batch_size = batch_size
        self._flush_s = flush_interval_s
        self._close_timeout_s = close_timeout_s
        self._closed = False
        self._deadline = float("inf")  # set by close(): when the drainer must give up
        self._full_warned = False
        self._stop = threading.Event()
        self._workers = [
            SinkWorker(sink, self.metrics, backlog=max_queue, retry_s=retry_s) for sink in sinks
        ]
        self._thread = threading.Thread(target=self._drain, name="shipyard-eventlog", daemon=True)
        self._thread.start()

    def emit(self, event: PredictionEvent) -> None:
        """Queue `event` for the sinks; drops (counted) instead of waiting when full."""
        if self._closed:
            self.metrics.closed.inc()
            return
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self.metrics.queue_full.inc()
            if not self._full_warned:
                self._full_warned = True
                log.warning("prediction log: queue full, dropping events (counted in metrics)")

    def close(self) -> None:
        """Write what is queued (for at most `close_timeout_s`), then close the sinks; events
        still waiting after that are dropped and counted as `shutdown`."""
        if self._closed:
            return
        self._closed = True
        deadline = self._deadline = time.monotonic() + self._close_timeout_s
        self._stop.set()
        self._thread.join(max(0.0, deadline - time.monotonic()))
        self._count_left(m.SHUTDOWN)
        for worker in self._workers:
            worker.stop(deadline)
        for worker in self._workers:
            worker.join(deadline + 1.0)

    def __enter__(self) -> PredictionLogger:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _drain(self) -> None:
        while not (self._stop.is_set() and self._queue.empty()):
            batch = self._collect()
            if batch:
                self._dispatch(batch)
            if self._stop.is_set() and time.monotonic() > self._deadline:
                return  # close() counts what is left

    def _collect(self) -> list[PredictionEvent]:
        """Up to batch_size events, waiting at most flush_interval_s after the first."""
        batch: list[PredictionEvent] = []
        wait_until = time.monotonic() + self._flush_s
        while len(batch) < self._batch_size:
            remaining = wait_until - time.monotonic()
            if self._stop.is_set():
                remaining = 0.0
            try:
                if remaining > 0:
                    batch.append(self._queue.get(timeout=min(remaining, 0.1)))
                else:
                    batch.append(self._queue.get_nowait())
            except queue.Empty:
                if remaining <= 0 or (not batch and self._stop.is_set()):
                    break
                if not batch:
                    wait_until = time.monotonic() + self._flush_s
        return batch

    def _dispatch(self, batch: list[PredictionEvent]) -> None:
        stored: list[PredictionEvent] = []
        for index, event in enumerate(batch):
            if index % YIELD_EVERY == YIELD_EVERY - 1:
                time.sleep(0)  # hand the GIL back: the request path shares this process
            try:
                stored.extend(self.privacy.scrub(event))
            except Exception as exc:
                self.metrics.dropped(m.INVALID, m.ALL_SINKS, 1)
                log.warning("prediction log: dropped an event that cannot be scrubbed: %s", exc)
        if stored:
            for worker in self._workers:
                worker.offer(stored)

    def _count_left(self, reason: str) -> None:
        left = 0
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
            left += 1
        self.metrics.dropped(reason, m.ALL_SINKS, left)
