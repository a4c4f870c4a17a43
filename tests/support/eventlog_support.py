"""Events and in-memory sinks shared by the prediction-log tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from shipyard.core.events import PredictionEvent

KEY = bytes(range(32))


def event(
    i: int = 0,
    *,
    model: str = "fraud",
    at: datetime | None = None,
    inputs: dict[str, list[Any]] | None = None,
    deployment: str | None = "fraud-prod",
    age: timedelta = timedelta(0),
) -> PredictionEvent:
    return PredictionEvent(
        request_id=f"req-{i}",
        model=model,
        version=1,
        at=(at or datetime.now(UTC)) - age,
        inputs=inputs if inputs is not None else {"amount": [float(i)], "customer": [f"c{i}"]},
        outputs={"label": [i % 2]},
        latency_ms=0.5,
        deployment=deployment,
    )


class MemorySink:
    """Keeps what it is given; optionally sleeps per batch or fails."""

    def __init__(self, name: str = "memory", *, sleep_s: float = 0.0, fail: bool = False) -> None:
        self.name = name
        self.sleep_s = sleep_s
        self.fail = fail
        self.events: list[PredictionEvent] = []
        self.closed = False
        self._lock = threading.Lock()

    def write(self, events: Sequence[PredictionEvent]) -> None:
        if self.sleep_s:
            time.sleep(self.sleep_s)
        if self.fail:
            raise ConnectionRefusedError("sink is down")
        with self._lock:
            self.events.extend(events)

    def close(self) -> None:
        self.closed = True
