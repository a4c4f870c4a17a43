"""Prometheus counters of the prediction log, registered into an injected CollectorRegistry.

Drops are counted, never hidden (DESIGN.md): per reason, and per sink where one sink lost
events the others stored.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

DROPPED = "shipyard_prediction_events_dropped"  # exported as ..._total
WRITTEN = "shipyard_prediction_events_written"  # exported as ..._total

# Reasons: the queue was full; a sink raised; a sink was skipped while it recovers from an
# error; a sink fell a whole backlog behind; close() ran out of time; emit() after close();
# an event the logger could not scrub.
QUEUE_FULL = "queue_full"
SINK_ERROR = "sink_error"
SINK_UNAVAILABLE = "sink_unavailable"
SINK_BACKLOG = "sink_backlog"
SHUTDOWN = "shutdown"
CLOSED = "closed"
INVALID = "invalid"
ALL_SINKS = "all"


class EventLogMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self._dropped = Counter(
            DROPPED,
            "Prediction events not stored, by reason and sink ('all' when no sink got them).",
            ("reason", "sink"),
            registry=registry,
        )
        self._written = Counter(
            WRITTEN, "Prediction events stored, by sink.", ("sink",), registry=registry
        )
        # Cached children: `.labels()` costs microseconds and queue_full is on the hot path.
        self.queue_full = self._dropped.labels(QUEUE_FULL, ALL_SINKS)
        self.closed = self._dropped.labels(CLOSED, ALL_SINKS)

    def dropped(self, reason: str, sink: str, n: int) -> None:
        if n:
            self._dropped.labels(reason, sink).inc(n)

    def written(self, sink: str, n: int) -> None:
        self._written.labels(sink).inc(n)

    def dropped_total(self) -> float:
        """Every event-or-sink drop so far (for tests and the `logs` summary)."""
        return sum(
            sample.value
            for metric in self._dropped.collect()
            for sample in metric.samples
            if sample.name.endswith("_total")
        )
