"""PredictionLogger: non-blocking emit, bounded queue, drops counted, failing sinks isolated."""

from __future__ import annotations

import logging

import pytest
from eventlog_support import KEY, MemorySink, event
from prometheus_client import CollectorRegistry

from shipyard.core.errors import InvalidArgument
from shipyard.core.events import EventEmitter, Sink
from shipyard.monitoring.eventlog import PredictionLogger
from shipyard.monitoring.eventlog.privacy import digest

DROPPED = "shipyard_prediction_events_dropped_total"
WRITTEN = "shipyard_prediction_events_written_total"


def dropped(registry: CollectorRegistry, reason: str, sink: str = "all") -> float:
    return registry.get_sample_value(DROPPED, {"reason": reason, "sink": sink}) or 0.0


def all_dropped(registry: CollectorRegistry) -> float:
    return sum(
        s.value for metric in registry.collect() for s in metric.samples if s.name == DROPPED
    )


def test_every_event_reaches_every_sink_scrubbed() -> None:
    registry = CollectorRegistry()
    a, b = MemorySink("a"), MemorySink("b")
    logger = PredictionLogger(
        [a, b], hash_key=KEY, registry=registry, exclude=["amount"], subject_column="customer",
        flush_interval_s=0.05, batch_size=7,
    )  # fmt: skip
    assert isinstance(logger, EventEmitter)
    assert isinstance(a, Sink)
    for i in range(100):
        logger.emit(event(i))
    logger.close()
    assert a.closed and b.closed
    for sink in (a, b):
        assert [e.request_id for e in sink.events] == [f"req-{i}" for i in range(100)]
        assert all("amount" not in e.inputs for e in sink.events)
        assert sink.events[5].subject == digest(KEY, "c5")
        assert sink.events[5].inputs["customer"] == [digest(KEY, "c5")]
        assert registry.get_sample_value(WRITTEN, {"sink": sink.name}) == 100
    assert all_dropped(registry) == 0


def test_full_queue_drops_and_counts_without_blocking() -> None:
    registry = CollectorRegistry()
    slow = MemorySink("slow", sleep_s=0.02)
    logger = PredictionLogger(
        [slow], hash_key=KEY, registry=registry, max_queue=1000, batch_size=100,
        flush_interval_s=0.01, close_timeout_s=5.0,
    )  # fmt: skip
    one = event(1)
    for _ in range(100_000):
        logger.emit(one)  # returns: a blocking emit would take 100k x 20 ms / 100 = 20 s+
    full = dropped(registry, "queue_full")
    assert full > 0
    logger.close()
    assert len(slow.events) + all_dropped(registry) == 100_000
    assert logger.metrics.dropped_total() == all_dropped(registry)
    assert len(slow.events) < 100_000


def test_failing_sink_dropped_and_counted_others_get_everything(
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = CollectorRegistry()
    good, bad = MemorySink("good"), MemorySink("bad", fail=True)
    logger = PredictionLogger(
        [bad, good], hash_key=KEY, registry=registry, flush_interval_s=0.01, batch_size=10,
        retry_s=(0.0, 0.0),
    )  # fmt: skip
    with caplog.at_level(logging.WARNING):
        for i in range(500):
            logger.emit(event(i))
        logger.close()
    assert len(good.events) == 500
    assert dropped(registry, "sink_error", "bad") + dropped(registry, "sink_backlog", "bad") == 500
    outages = [r for r in caplog.records if "sink bad failed" in r.getMessage()]
    assert len(outages) == 1  # logged once per outage, not once per batch


def test_recovered_sink_is_logged_and_written_again(caplog: pytest.LogCaptureFixture) -> None:
    registry = CollectorRegistry()
    flaky = MemorySink("flaky", fail=True)
    logger = PredictionLogger(
        [flaky], hash_key=KEY, registry=registry, flush_interval_s=0.01, batch_size=1,
        retry_s=(0.0, 0.0),
    )  # fmt: skip
    with caplog.at_level(logging.WARNING):
        logger.emit(event(0))
        _wait_for(lambda: dropped(registry, "sink_error", "flaky") == 1)
        flaky.fail = False
        logger.emit(event(1))
        logger.close()
    assert [e.request_id for e in flaky.events] == ["req-1"]
    assert any("flaky recovered; 1 events" in r.getMessage() for r in caplog.records)


def test_sink_in_back_off_is_skipped_and_counted() -> None:
    registry = CollectorRegistry()
    bad = MemorySink("bad", fail=True)
    logger = PredictionLogger(
        [bad], hash_key=KEY, registry=registry, flush_interval_s=0.01, batch_size=1,
        retry_s=(60.0, 60.0),
    )  # fmt: skip
    for i in range(5):
        logger.emit(event(i))
    logger.close()
    assert dropped(registry, "sink_error", "bad") == 1  # one real attempt
    skipped = dropped(registry, "sink_unavailable", "bad") + dropped(
        registry, "sink_backlog", "bad"
    )
    assert skipped == 4


def test_emit_after_close_is_counted_not_raised() -> None:
    registry = CollectorRegistry()
    sink = MemorySink()
    logger = PredictionLogger([sink], hash_key=KEY, registry=registry)
    logger.close()
    logger.emit(event(0))
    assert dropped(registry, "closed") == 1
    assert sink.events == []


def test_malformed_event_is_dropped_and_counted_the_rest_written() -> None:
    registry = CollectorRegistry()
    sink = MemorySink()
    logger = PredictionLogger([sink], hash_key=KEY, registry=registry, flush_interval_s=0.01)
    logger.emit(event(0, inputs={"amount": 5}))  # type: ignore[dict-item]  # not a list
    logger.emit(event(1))
    logger.close()
    assert [e.request_id for e in sink.events] == ["req-1"]
    assert dropped(registry, "invalid") == 1


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"sample_rate": 2.0}, "sample_rate must be between 0 and 1, got 2.0"),
        ({"max_queue": 0}, "max_queue must be at least 1, got 0"),
        ({"batch_size": 0}, "batch_size must be at least 1, got 0"),
        ({"flush_interval_s": 0.0}, "must be positive"),
        ({"exclude": ["ssn"], "columns": ["amount"]}, "unknown columns ssn"),
    ],
)
def test_bad_configuration_refused(options: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        PredictionLogger([MemorySink()], hash_key=KEY, **options)  # type: ignore[arg-type]


def test_duplicate_sink_names_refused() -> None:
    with pytest.raises(InvalidArgument, match="sink names must be unique"):
        PredictionLogger([MemorySink("x"), MemorySink("x")], hash_key=KEY)


def _wait_for(condition: object, rounds: int = 500) -> None:
    import time

    for _ in range(rounds):
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.01)
    raise AssertionError("condition not reached")
