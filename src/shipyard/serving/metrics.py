"""Prometheus metrics of the data plane, registered into an injected CollectorRegistry.

Nothing here touches prometheus_client's global registry: the app factory owns a registry,
tests build a fresh one (STYLE.md §9). Metric and label names are the constants below.
Labelled children are cached in dicts because `.labels()` costs microseconds per call.

Per-request observations are buffered in plain numbers and written to prometheus_client once
per event-loop tick (and before any collection of the registry). With several workers every
prometheus_client write is an mmap update plus an `os.getpid()` system call, nine of them per
request; buffered, a tick of requests costs a handful of writes, and nothing is later than
the end of the tick that observed it. Without a running loop writes go through at once.
"""

from __future__ import annotations

import asyncio
import math
from bisect import bisect_left
from collections.abc import Iterable
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

REQUESTS = "shipyard_requests"  # exported as shipyard_requests_total
REQUEST_SECONDS = "shipyard_request_duration_seconds"
QUEUE_WAIT_SECONDS = "shipyard_batch_queue_wait_seconds"
BATCH_ROWS = "shipyard_batch_rows"
IN_FLIGHT = "shipyard_requests_in_flight"
LOAD_SECONDS = "shipyard_model_load_duration_seconds"
LOAD_FAILURES = "shipyard_model_load_failures"  # exported as ..._total
SERVED_VERSION = "shipyard_model_served_version"
CACHE_LOOKUPS = "shipyard_cache_lookups"  # exported as ..._total

CACHE_HIT = "hit"
CACHE_MISS = "miss"

MODEL = "model"
VERSION = "version"
PROTOCOL = "protocol"
STATUS = "status"
RESULT = "result"

# Single-row onnxruntime answers in microseconds: start the buckets at 50 µs.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
ROW_BUCKETS: tuple[float, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 16384)
LOAD_BUCKETS: tuple[float, ...] = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class _Buffered:
    """A labelled child's pending change, applied by `flush`."""

    __slots__ = ()

    def flush(self) -> None:
        raise NotImplementedError


_B = TypeVar("_B", bound=_Buffered)


class _AddBuffer(_Buffered):
    """A pending amount for a counter (only grows) or a gauge (goes up and down): both
    are flushed with one `inc`."""

    __slots__ = ("_child", "amount")

    def __init__(self, child: Any) -> None:
        self._child = child
        self.amount = 0.0

    def flush(self) -> None:
        if self.amount:
            amount, self.amount = self.amount, 0.0
            self._child.inc(amount)


class _HistogramBuffer(_Buffered):
    """Bucket counts and the sum of pending observations; one write per touched bucket.

    prometheus_client has no public bulk observe, so this adds to the child's bucket and sum
    values directly when they look as expected (checked once, and by the tests against plain
    `observe`); otherwise it replays each observation through `observe`."""

    __slots__ = ("_bounds", "_child", "_direct", "_values", "counts", "total")

    def __init__(self, child: Any, bounds: tuple[float, ...]) -> None:
        self._child = child
        self._bounds = (*bounds, math.inf)
        buckets = getattr(child, "_buckets", None)
        self._direct = (
            tuple(getattr(child, "_upper_bounds", ())) == self._bounds
            and isinstance(buckets, list)
            and len(buckets) == len(self._bounds)
            and hasattr(child, "_sum")
        )
        self.counts = [0] * len(self._bounds)
        self.total = 0.0
        self._values: list[float] = []

    def observe(self, value: float) -> None:
        if self._direct:
            self.counts[bisect_left(self._bounds, value)] += 1
            self.total += value
        else:
            self._values.append(value)

    def flush(self) -> None:
        if not self._direct:
            values, self._values = self._values, []
            for value in values:
                self._child.observe(value)
            return
        counts, total = self.counts, self.total
        if not any(counts):
            return
        self.counts, self.total = [0] * len(counts), 0.0
        self._child._sum.inc(total)
        buckets = self._child._buckets
        for index, count in enumerate(counts):
            if count:
                buckets[index].inc(count)


class _FlushFirst(Collector):
    """Registered first: whoever collects the registry sees buffered observations."""

    def __init__(self, flush: Any) -> None:
        self._flush = flush

    def collect(self) -> Iterable[Metric]:
        self._flush()
        return ()

    def describe(self) -> Iterable[Metric]:
        return ()


class ModelMetrics:
    """The children of one model version, resolved once: the batcher and host call these."""

    def __init__(self, metrics: ServingMetrics, model: str, version: str) -> None:
        self._metrics = metrics
        self._queue_wait = metrics.buffer(
            _HistogramBuffer(metrics.queue_wait_seconds.labels(model, version), LATENCY_BUCKETS)
        )
        self._batch_rows = metrics.buffer(
            _HistogramBuffer(metrics.batch_rows.labels(model, version), ROW_BUCKETS)
        )
        self._in_flight = metrics.buffer(_AddBuffer(metrics.in_flight.labels(model, version)))

    def queue_wait(self, seconds: float) -> None:
        self._queue_wait.observe(seconds)
        self._metrics.touched()

    def batch(self, rows: int) -> None:
        self._batch_rows.observe(rows)
        self._metrics.touched()

    def started(self) -> None:
        self._in_flight.amount += 1
        self._metrics.touched()

    def finished(self) -> None:
        self._in_flight.amount -= 1
        self._metrics.touched()


class ServingMetrics:
    """Every data-plane metric, in `registry` (plus process CPU and memory)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self._buffers: list[_Buffered] = []
        self._scheduled = False
        registry.register(_FlushFirst(self.flush))
        self.requests = Counter(
            REQUESTS,
            "Inference requests by outcome.",
            (MODEL, VERSION, PROTOCOL, STATUS),
            registry=registry,
        )
        self.request_seconds = Histogram(
            REQUEST_SECONDS,
            "Time to answer an inference request, decode to encode.",
            (MODEL, VERSION, PROTOCOL),
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.queue_wait_seconds = Histogram(
            QUEUE_WAIT_SECONDS,
            "Time a request waited in its model's batch queue.",
            (MODEL, VERSION),
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.batch_rows = Histogram(
            BATCH_ROWS,
            "Rows per model call (after micro-batching).",
            (MODEL, VERSION),
            buckets=ROW_BUCKETS,
            registry=registry,
        )
        self.in_flight = Gauge(
            IN_FLIGHT, "Requests inside a model version.", (MODEL, VERSION), registry=registry
        )
        self.load_seconds = Histogram(
            LOAD_SECONDS,
            "Time to load and warm up a model version.",
            (MODEL,),
            buckets=LOAD_BUCKETS,
            registry=registry,
        )
        self.load_failures = Counter(
            LOAD_FAILURES, "Model versions that failed to load.", (MODEL,), registry=registry
        )
        self.served_version = Gauge(
            SERVED_VERSION,
            "The version a model name answers by default.",
            (MODEL,),
            registry=registry,
        )
        self.cache_lookups = Counter(
            CACHE_LOOKUPS,
            "Response cache lookups by result (hit, miss).",
            (MODEL, VERSION, RESULT),
            registry=registry,
        )
        ProcessCollector(registry=registry)
        self._cache: dict[tuple[str, ...], _AddBuffer] = {}
        self._requests: dict[tuple[str, ...], _AddBuffer] = {}
        self._seconds: dict[tuple[str, str, str], _HistogramBuffer] = {}
        self._models: dict[tuple[str, str], ModelMetrics] = {}

    def buffer(self, buffered: _B) -> _B:
        self._buffers.append(buffered)
        return buffered

    def touched(self) -> None:
        """Something was buffered: flush at the end of this loop tick (now, without a loop)."""
        if self._scheduled:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            return
        self._scheduled = True
        loop.call_soon(self.flush)

    def flush(self) -> None:
        """Write every buffered observation to prometheus_client."""
        self._scheduled = False
        for buffered in self._buffers:
            buffered.flush()

    def observe_request(
        self, model: str, version: str, protocol: str, status: str, seconds: float
    ) -> None:
        """One answered request: `status` is "OK" or an ErrorKind value, `protocol` e.g.
        "rest-v2", "grpc-v2", "mlflow", "kserve-v1"."""
        self._count(self._requests, self.requests, (model, version, protocol, status))
        short = (model, version, protocol)
        histogram = self._seconds.get(short)
        if histogram is None:
            child = self.request_seconds.labels(*short)
            histogram = self._seconds[short] = self.buffer(_HistogramBuffer(child, LATENCY_BUCKETS))
        histogram.observe(seconds)
        self.touched()

    def cache_lookup(self, model: str, version: str, result: str) -> None:
        """One response-cache lookup: `result` is CACHE_HIT or CACHE_MISS."""
        self._count(self._cache, self.cache_lookups, (model, version, result))
        self.touched()

    def _count(
        self, buffers: dict[tuple[str, ...], _AddBuffer], family: Counter, key: tuple[str, ...]
    ) -> None:
        """Add one to `family` at `key`, through the labelled child's buffer (made once)."""
        counter = buffers.get(key)
        if counter is None:
            counter = buffers[key] = self.buffer(_AddBuffer(family.labels(*key)))
        counter.amount += 1

    def model(self, name: str, version: str) -> ModelMetrics:
        key = (name, version)
        found = self._models.get(key)
        if found is None:
            found = self._models[key] = ModelMetrics(self, name, version)
        return found

    def loaded(self, name: str, seconds: float) -> None:
        self.load_seconds.labels(name).observe(seconds)

    def load_failed(self, name: str) -> None:
        self.load_failures.labels(name).inc()

    def serving(self, name: str, version: int) -> None:
        self.served_version.labels(name).set(version)
