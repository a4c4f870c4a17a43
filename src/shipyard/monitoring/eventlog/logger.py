"""PredictionLogger: the data plane's `EventEmitter`, never blocking the request path.

`emit` appends to a bounded deque (O(1), lock-free in CPython, safe from an event loop or any
thread); when it is full the event is dropped and counted. A background thread looks at the
deque every `POLL_S` and takes batches (up to `batch_size` events, or what is there
`flush_interval_s` after the first), scrubs them (`Privacy`) and hands each batch to one worker
thread per sink. Serving keeps answering whatever the sinks do (promise P13).

Polled, not signalled: a `queue.Queue` wakes the waiting thread on every put, so each request
handed the GIL to the logger thread and back — on a busy worker that ping-pong, not the
logging work, was most of the cost.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
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
POLL_S = 0.05  # how often the logger thread looks for events (at most flush_interval_s)


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
        self._pending: deque[PredictionEvent] = deque()
        self._max_queue = max_queue
        self._poll_s = min(POLL_S, flush_interval_s)
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
        # Racing emitters may pass the bound by a few events; never by more than their number.
        if len(self._pending) < self._max_queue:
            self._pending.append(event)
        else:
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
        while not (self._stop.is_set() and not self._pending):
            batch = self._collect()
            if batch:
                self._dispatch(batch)
            if self._stop.is_set() and time.monotonic() > self._deadline:
                return  # close() counts what is left

    def _collect(self) -> list[PredictionEvent]:
        """Up to batch_size events, once that many wait or flush_interval_s after the first
        was seen (at once when stopping); empty when stopping with nothing left."""
        first_seen: float | None = None
        while True:
            stopping = self._stop.is_set()
            waiting = len(self._pending)
            now = time.monotonic()
            if waiting and first_seen is None:
                first_seen = now
            due = first_seen is not None and (stopping or now - first_seen >= self._flush_s)
            if waiting >= self._batch_size or (waiting and due):
                return self._take(min(waiting, self._batch_size))
            if stopping:
                return []
            self._stop.wait(self._poll_s)

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
        self.metrics.dropped(reason, m.ALL_SINKS, len(self._take(len(self._pending))))

    def _take(self, count: int) -> list[PredictionEvent]:
        """Up to `count` of the oldest events (fewer if another thread took some first: a
        drainer that outlived close() and close() itself may both be taking)."""
        taken: list[PredictionEvent] = []
        try:
            for _ in range(count):
                taken.append(self._pending.popleft())
        except IndexError:
            pass
        return taken
