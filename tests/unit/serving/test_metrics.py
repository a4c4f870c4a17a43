"""Buffered metrics: what a scrape shows equals what direct prometheus_client calls give."""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from shipyard.serving.metrics import LATENCY_BUCKETS, ROW_BUCKETS, ServingMetrics

LATENCIES = [0.00001, 0.00005, 0.00007, 0.0003, 0.0003, 0.004, 0.3, 7.0, 11.0, 1e9]
ROWS = [1, 1, 2, 3, 64, 65, 5000, 20000]


def _direct_registry() -> CollectorRegistry:
    """The same observations made with plain prometheus_client calls, one write each."""
    registry = CollectorRegistry()
    requests = Counter("shipyard_requests", "", ("model", "version", "protocol", "status"))
    registry.register(requests)
    seconds = Histogram(
        "shipyard_request_duration_seconds",
        "",
        ("model", "version", "protocol"),
        buckets=LATENCY_BUCKETS,
        registry=registry,
    )
    rows = Histogram(
        "shipyard_batch_rows", "", ("model", "version"), buckets=ROW_BUCKETS, registry=registry
    )
    in_flight = Gauge("shipyard_requests_in_flight", "", ("model", "version"), registry=registry)
    for value in LATENCIES:
        requests.labels("m", "1", "rest-v2", "OK").inc()
        seconds.labels("m", "1", "rest-v2").observe(value)
    for value in ROWS:
        rows.labels("m", "1").observe(value)
    in_flight.labels("m", "1").inc(2)
    return registry


def _samples(registry: CollectorRegistry, prefixes: tuple[str, ...]) -> dict[str, float]:
    lines = generate_latest(registry).decode().splitlines()
    return {
        line.rpartition(" ")[0]: float(line.rpartition(" ")[2])
        for line in lines
        if line.startswith(prefixes) and "_created" not in line
    }


def _observe(metrics: ServingMetrics) -> None:
    child = metrics.model("m", "1")
    for value in LATENCIES:
        metrics.observe_request("m", "1", "rest-v2", "OK", value)
    for value in ROWS:
        child.batch(value)
    for _ in range(3):
        child.started()
    child.finished()


PREFIXES = (
    "shipyard_requests_total",
    "shipyard_request_duration_seconds_",
    "shipyard_batch_rows_",
    "shipyard_requests_in_flight",
)


def test_buffered_observations_equal_direct_prometheus_writes() -> None:
    expected = _samples(_direct_registry(), PREFIXES)
    metrics = ServingMetrics(CollectorRegistry())
    _observe(metrics)
    assert _samples(metrics.registry, PREFIXES) == expected
    assert expected['shipyard_batch_rows_sum{model="m",version="1"}'] == sum(ROWS)


def test_inside_a_loop_writes_wait_for_the_end_of_the_tick_or_a_collection() -> None:
    async def main() -> None:
        metrics = ServingMetrics(CollectorRegistry())
        labels = {"model": "m", "version": "1", "protocol": "rest-v2", "status": "OK"}
        metrics.observe_request("m", "1", "rest-v2", "OK", 0.001)
        child = metrics.requests.labels("m", "1", "rest-v2", "OK")
        assert child._value.get() == 0  # buffered
        # A collection (a scrape) flushes first.
        assert metrics.registry.get_sample_value("shipyard_requests_total", labels) == 1
        metrics.observe_request("m", "1", "rest-v2", "OK", 0.001)
        await asyncio.sleep(0)  # the end of the tick flushes too
        assert child._value.get() == 2

    asyncio.run(main())
