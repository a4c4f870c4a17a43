"""Adaptive micro-batching for one model version.

Callers `submit` prepared inputs and await their own outputs. When the model is free, the
batcher takes what is queued (up to `max_batch_size` ROWS, only requests with the same batch
key), optionally keeps collecting until `max_wait_ms` after the first one, runs the model once
and hands each caller exactly its own rows. Pitfalls this guards against (STYLE.md §6): the
deadline is computed once per batch; the budget counts rows, not requests; output rows are
checked against input rows; each queue entry carries its own future (no id→future dict), and
futures already done (cancelled callers) are skipped; the queue is bounded and rejects at once.

`run` is synchronous. By default it runs inline on the event loop: onnxruntime answers a
single row in microseconds, far less than a thread hop costs. With no wait configured, the
queue is flushed once per event-loop tick, so requests that arrive together are merged
without adding a timer to anyone's latency. Slow models set
`executor_threads` so batches run in a thread pool (up to `max_concurrent_batches` at once).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

from shipyard.core.errors import Internal, InvalidArgument, ShipyardError, Unavailable
from shipyard.core.signatures import Prepared
from shipyard.runtimes.base import Outputs
from shipyard.serving.merge import batch_key, merge, split

logger = logging.getLogger(__name__)

Run = Callable[[Prepared], Outputs]
# One result per request of a batch: its own outputs, or the error it gets.
Results = list[Outputs | ShipyardError]


class BatchObserver(Protocol):
    """Where a batcher reports what it did (ServingMetrics gives one per model version)."""

    def queue_wait(self, seconds: float) -> None: ...

    def batch(self, rows: int) -> None: ...


def _positive(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidArgument(f"batching: {name} must be a positive integer, got {value!r}")


@dataclass(frozen=True, slots=True)
class BatchSettings:
    """Limits of one model version's batcher; checked when built so bad config fails early."""

    max_batch_size: int = 64  # rows (sum of dimension 0), not requests
    max_wait_ms: float = 0.0  # 0: take only what is already queued
    max_queue: int = 2048  # requests waiting; more are refused with UNAVAILABLE
    max_concurrent_batches: int = 1  # >1 needs executor_threads
    executor_threads: int = 0  # 0: run the model inline on the event loop

    def __post_init__(self) -> None:
        _positive("max_batch_size", self.max_batch_size)
        _positive("max_queue", self.max_queue)
        _positive("max_concurrent_batches", self.max_concurrent_batches)
        wait = self.max_wait_ms
        if isinstance(wait, bool) or not isinstance(wait, int | float) or not math.isfinite(wait):
            raise InvalidArgument(f"batching: max_wait_ms must be a number, got {wait!r}")
        if wait < 0:
            raise InvalidArgument(f"batching: max_wait_ms must be >= 0, got {wait!r}")
        threads = self.executor_threads
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 0:
            raise InvalidArgument(
                f"batching: executor_threads must be an integer >= 0, got {threads!r}"
            )
        if self.max_concurrent_batches > 1 and threads == 0:
            raise InvalidArgument(
                "batching: max_concurrent_batches > 1 needs executor_threads > 0 "
                "(inline batches run one at a time on the event loop)"
            )


@dataclass(slots=True, eq=False)
class _Pending:
    """A queued request travels with its own future, so nothing can lose track of it."""

    inputs: Prepared
    rows: int
    key: Hashable
    future: asyncio.Future[Outputs]
    queued_at: float


class Batcher:
    """Runs `run` on micro-batches of submitted requests; see the module docstring."""

    def __init__(
        self,
        run: Run,
        settings: BatchSettings | None = None,
        *,
        name: str = "model",
        metrics: BatchObserver | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.name = name
        self.settings = settings or BatchSettings()
        self._run = run
        self._metrics = metrics
        self._clock = clock
        self._max_wait_s = self.settings.max_wait_ms / 1000.0
        self._ticks = self.settings.executor_threads == 0 and self._max_wait_s == 0
        self._flush_scheduled = False
        self._queue: deque[_Pending] = deque()
        self._closed = False
        # Created on first use so they bind to the loop that serves requests.
        self._wakeup: asyncio.Event | None = None
        self._slots: asyncio.Semaphore | None = None
        self._dispatcher: asyncio.Task[None] | None = None
        self._batches: set[asyncio.Task[None]] = set()
        threads = self.settings.executor_threads
        self._executor = (
            ThreadPoolExecutor(threads, thread_name_prefix=f"shipyard-batch-{name}")
            if threads
            else None
        )

    @property
    def queued(self) -> int:
        return len(self._queue)

    @property
    def closed(self) -> bool:
        return self._closed

    async def submit(self, inputs: Prepared, rows: int, *, key: Hashable | None = None) -> Outputs:
        """This request's outputs (its own `rows` rows of every output)."""
        if self._closed:
            raise Unavailable(f"model {self.name} is shutting down")
        if len(self._queue) >= self.settings.max_queue:
            raise Unavailable(
                f"model {self.name} is overloaded: {len(self._queue)} requests queued",
                details={"queued": len(self._queue)},
            )
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Outputs] = loop.create_future()
        entry = _Pending(inputs, rows, batch_key(inputs) if key is None else key, future, 0.0)
        if self._ticks:
            # Inline, no wait: flush once per event-loop tick. Requests whose bodies arrived
            # in the same tick run as one batch, and a lone request waits no longer than it
            # takes the loop to come round once.
            self._clock = self._clock or loop.time
            entry.queued_at = self._now()
            self._queue.append(entry)
            if not self._flush_scheduled:
                self._flush_scheduled = True
                loop.call_soon(self._flush)
            return await future
        wakeup = self._start(loop)
        entry.queued_at = self._now()
        self._queue.append(entry)
        wakeup.set()
        return await future  # a cancelled caller cancels `future`; the batch then skips it

    async def close(self) -> None:
        """Refuse new requests, answer every queued one, then stop."""
        self._closed = True
        if self._ticks:
            self._flush()  # answer what this tick queued rather than refusing it
        if self._wakeup is not None:
            self._wakeup.set()
        if self._dispatcher is not None:
            await asyncio.gather(self._dispatcher, return_exceptions=True)
        while self._batches:
            await asyncio.gather(*self._batches, return_exceptions=True)
        self._fail_queued(Unavailable(f"model {self.name} is shutting down"))
        if self._executor is not None:
            self._executor.shutdown(wait=False)

    # -- dispatching -------------------------------------------------------------------------

    def _flush(self) -> None:
        """Run everything queued this tick, batch by batch (same key, within the budget)."""
        self._flush_scheduled = False
        while self._queue:
            batch: list[_Pending] = []
            self._take(batch, 0)
            if batch:
                self._answer(batch, self._process(self._parts(batch)))

    def _start(self, loop: asyncio.AbstractEventLoop) -> asyncio.Event:
        if self._wakeup is None or self._dispatcher is None:
            self._clock = self._clock or loop.time
            self._wakeup = asyncio.Event()
            self._slots = asyncio.Semaphore(self.settings.max_concurrent_batches)
            self._dispatcher = loop.create_task(self._dispatch(), name=f"batcher-{self.name}")
            self._dispatcher.add_done_callback(self._dispatcher_done)
        return self._wakeup

    def _now(self) -> float:
        assert self._clock is not None
        return self._clock()

    async def _dispatch(self) -> None:
        assert self._wakeup is not None and self._slots is not None
        while True:
            if not self._queue:
                if self._closed:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            await self._slots.acquire()  # the model is free: collect now, not earlier
            batch = [p for p in await self._collect() if not p.future.done()]
            if not batch:
                self._slots.release()
            elif self._executor is None:
                try:
                    self._answer(batch, self._process(self._parts(batch)))
                finally:
                    self._slots.release()
                await asyncio.sleep(0)  # let callers resume and new requests queue up
            else:
                task = asyncio.get_running_loop().create_task(self._run_threaded(batch))
                self._batches.add(task)
                task.add_done_callback(self._batches.discard)

    async def _collect(self) -> list[_Pending]:
        """The next batch: the head of the queue plus queued requests with its key that fit,
        then (with max_wait_ms) whatever arrives before the deadline."""
        batch: list[_Pending] = []
        rows, full = self._take(batch, 0)
        if not batch or full or self._max_wait_s == 0:
            return batch
        assert self._wakeup is not None
        deadline = self._now() + self._max_wait_s  # once per batch (MLServer #1936)
        while not full and not self._closed:
            remaining = deadline - self._now()
            if remaining <= 0:
                break
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except TimeoutError:
                break
            rows, full = self._take(batch, rows)
        return batch

    def _take(self, batch: list[_Pending], rows: int) -> tuple[int, bool]:
        """Move queued requests into `batch` (FIFO, same key, within the row budget).

        The first request of a batch is always taken, even if it alone exceeds the budget:
        it runs alone, never split and never refused. Returns (rows, whether the batch is full).
        """
        budget = self.settings.max_batch_size
        skipped: list[_Pending] = []
        full = False
        while self._queue and not full:
            entry = self._queue.popleft()
            if entry.future.done():
                continue  # cancelled while queued
            if batch and entry.key != batch[0].key:
                skipped.append(entry)
                continue
            if batch and rows + entry.rows > budget:
                skipped.append(entry)
                full = True
                continue
            batch.append(entry)
            rows += entry.rows
            full = rows >= budget
        self._queue.extendleft(reversed(skipped))
        return rows, full

    async def _run_threaded(self, batch: list[_Pending]) -> None:
        assert self._executor is not None and self._slots is not None
        loop = asyncio.get_running_loop()
        try:
            results = await loop.run_in_executor(self._executor, self._process, self._parts(batch))
        except Exception as exc:  # the executor itself failed (e.g. shut down)
            logger.exception("batch of %s could not run", self.name)
            results = [Internal(f"model {self.name} could not run: {type(exc).__name__}")] * len(
                batch
            )
        finally:
            self._slots.release()
        self._answer(batch, results)

    def _parts(self, batch: list[_Pending]) -> list[tuple[Prepared, int]]:
        now = self._now()
        self._observe_batch(sum(p.rows for p in batch), [now - p.queued_at for p in batch])
        return [(p.inputs, p.rows) for p in batch]

    # -- running the model (synchronous: inline or in a worker thread) ----------------------

    def _process(self, parts: list[tuple[Prepared, int]]) -> Results:
        rows = [count for _, count in parts]
        try:
            outputs = self._call(merge([inputs for inputs, _ in parts]))
        except ShipyardError as exc:
            if len(parts) == 1:
                return [exc]
            # One caller's bad rows must not fail the others: score each request alone.
            return [self._process([part])[0] for part in parts]
        try:
            return list(split(outputs, rows, model=self.name))
        except ShipyardError as exc:  # a model bug: every request of the batch fails
            logger.error("%s", exc)
            return [exc] * len(parts)

    def _call(self, inputs: Prepared) -> Outputs:
        """Run the model. ShipyardErrors pass through; any other exception becomes
        InvalidArgument: inputs were already checked against the signature, so a framework
        error almost always means values the model cannot take (e.g. an unknown category)."""
        try:
            return self._run(inputs)
        except ShipyardError:
            raise
        except Exception as exc:
            logger.warning("model %s failed on a batch", self.name, exc_info=True)
            message = str(exc).splitlines()[0][:300] if str(exc) else ""
            raise InvalidArgument(
                f"model {self.name} could not score this input: {type(exc).__name__}: {message}"
            ) from None

    # -- answering ---------------------------------------------------------------------------

    @staticmethod
    def _answer(batch: list[_Pending], results: Results) -> None:
        for entry, result in zip(batch, results, strict=True):
            if entry.future.done():
                continue  # the caller went away while its batch ran
            if isinstance(result, ShipyardError):
                entry.future.set_exception(result)
            else:
                entry.future.set_result(result)

    def _fail_queued(self, error: ShipyardError) -> None:
        while self._queue:
            entry = self._queue.popleft()
            if not entry.future.done():
                entry.future.set_exception(error)

    def _dispatcher_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            self._closed = True
            self._fail_queued(Unavailable(f"model {self.name} is shutting down"))
            return
        error = task.exception()
        if error is None:
            return
        logger.error("batcher of %s stopped", self.name, exc_info=error)
        self._closed = True
        self._fail_queued(Internal(f"model {self.name} stopped answering"))

    def _observe_batch(self, rows: int, waits: Sequence[float]) -> None:
        if self._metrics is None:
            return
        self._metrics.batch(rows)
        for wait in waits:
            self._metrics.queue_wait(wait)
