"""Prometheus metrics of a stream consumer, registered into an injected CollectorRegistry."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge

PROCESSED = "shipyard_stream_processed"  # exported as ..._total
FAILED = "shipyard_stream_failed"  # tries that will be retried (not acknowledged)
DEAD_LETTERED = "shipyard_stream_dead_lettered"
LAG = "shipyard_stream_lag"


@dataclass(slots=True)
class Tally:
    """What this consumer did, for the summary line (the counters' values, unlabelled)."""

    processed: int = 0
    failed: int = 0
    dead_lettered: int = 0
    batches: int = 0
    lag: int | None = None
    reasons: dict[str, int] = field(default_factory=dict)


class StreamMetrics:
    def __init__(self, registry: CollectorRegistry, broker: str, source: str) -> None:
        labels = ("broker", "source")
        self.registry = registry
        self.tally = Tally()
        self._processed = Counter(
            PROCESSED, "Records scored and published.", labels, registry=registry
        ).labels(broker, source)
        self._failed = Counter(
            FAILED, "Record tries that failed and will be retried.", labels, registry=registry
        ).labels(broker, source)
        self._dead = Counter(
            DEAD_LETTERED,
            "Records sent to the dead-letter destination, by kind.",
            (*labels, "kind"),
            registry=registry,
        )
        self._labels = (broker, source)
        self._lag = Gauge(
            LAG, "Messages in the source not yet delivered to the group.", labels, registry=registry
        ).labels(broker, source)

    def processed(self, count: int) -> None:
        self.tally.processed += count
        self._processed.inc(count)

    def failed(self, count: int) -> None:
        self.tally.failed += count
        self._failed.inc(count)

    def dead_lettered(self, kind: str) -> None:
        self.tally.dead_lettered += 1
        self.tally.reasons[kind] = self.tally.reasons.get(kind, 0) + 1
        self._dead.labels(*self._labels, kind).inc()

    def lag(self, value: int | None) -> None:
        self.tally.lag = value
        if value is not None:
            self._lag.set(value)
