"""The broker-neutral loop with an in-memory broker and a stand-in data plane: what is
published, acknowledged, released and dead-lettered, and when."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, cast

import numpy as np
import orjson
import pandas as pd
from prometheus_client import CollectorRegistry

from shipyard.core.errors import InvalidArgument, Unavailable
from shipyard.jobs.stream.broker import Message, Outgoing
from shipyard.jobs.stream.loop import StreamProcessor, StreamSettings, StreamSummary
from shipyard.jobs.stream.metrics import StreamMetrics
from shipyard.serving.dataplane import DataPlane
from shipyard.serving.types import Served


class MemoryBroker:
    """Redelivers released messages with one more delivery; can fail the next publishes."""

    name = "memory"

    def __init__(self, bodies: Sequence[bytes]) -> None:
        self.queue = [Message(str(i), b, 1, None) for i, b in enumerate(bodies)]
        self.results: list[Outgoing] = []
        self.dead: list[Outgoing] = []
        self.acked: list[str] = []
        self.released: list[str] = []
        self.fail_publishes = 0

    async def connect(self) -> None:
        return None

    async def fetch(self, max_messages: int, max_wait_s: float) -> list[Message]:
        taken, self.queue = self.queue[:max_messages], self.queue[max_messages:]
        return taken

    async def publish(self, results: Sequence[Outgoing], dead: Sequence[Outgoing]) -> None:
        if self.fail_publishes:
            self.fail_publishes -= 1
            raise Unavailable("memory: connection lost")
        self.results.extend(results)
        self.dead.extend(dead)

    async def ack(self, messages: Sequence[Message]) -> None:
        self.acked.extend(m.id for m in messages)

    async def release(self, messages: Sequence[Message]) -> None:
        self.released.extend(m.id for m in messages)
        self.queue.extend(Message(m.id, m.body, m.deliveries + 1, None) for m in messages)

    async def lag(self) -> int | None:
        return len(self.queue)

    async def close(self) -> None:
        return None


class Plane:
    """Scores x * 2; refuses tables holding a negative x; can be unavailable for a while."""

    def __init__(self, unavailable: int = 0) -> None:
        self.frames: list[pd.DataFrame] = []
        self.unavailable = unavailable

    async def predict(
        self, name: str | None, version: str | None, data: pd.DataFrame
    ) -> tuple[Served, dict[str, np.ndarray]]:
        self.frames.append(data)
        if self.unavailable:
            self.unavailable -= 1
            raise Unavailable("model m is overloaded")
        if "x" not in data.columns:
            raise InvalidArgument("missing input columns: x")
        if (data["x"] < 0).any():
            raise InvalidArgument("x must be >= 0")
        return Served("m", 2), {"predict": data["x"].to_numpy() * 2}


def _run(broker: MemoryBroker, plane: Plane, **settings: Any) -> StreamSummary:
    metrics = StreamMetrics(CollectorRegistry(), broker.name, "in")
    config = StreamSettings(until_empty=True, max_wait_ms=0, **settings)
    processor = StreamProcessor(broker, cast(DataPlane, plane), "m", config, metrics)
    return asyncio.run(processor.run(asyncio.Event()))


def _bodies(*xs: float) -> list[bytes]:
    return [orjson.dumps({"id": f"r{i}", "x": x}) for i, x in enumerate(xs)]


def _outputs(broker: MemoryBroker) -> dict[str, Any]:
    return {o.key: orjson.loads(o.body)["outputs"]["predict"] for o in broker.results}


def test_a_batch_is_one_model_call_and_everything_is_acked_after_publishing() -> None:
    broker, plane = MemoryBroker(_bodies(1, 2, 3)), Plane()
    summary = _run(broker, plane, batch_size=8)
    assert _outputs(broker) == {"r0": 2, "r1": 4, "r2": 6}
    assert len(plane.frames) == 1 and sorted(broker.acked) == ["0", "1", "2"]
    assert (summary.processed, summary.dead_lettered, summary.lag) == (3, 0, 0)


def test_one_refused_record_is_dead_lettered_and_the_rest_are_scored() -> None:
    broker = MemoryBroker(_bodies(1, -1, 3))
    summary = _run(broker, Plane(), batch_size=8)
    assert _outputs(broker) == {"r0": 2, "r2": 6}
    [letter] = [orjson.loads(d.body) for d in broker.dead]
    assert (letter["id"], letter["kind"], letter["reason"]) == ("r1", "rejected", "x must be >= 0")
    assert sorted(broker.acked) == ["0", "1", "2"]
    assert summary.dead_lettered == 1


def test_records_naming_other_features_are_not_scored_with_gaps_filled() -> None:
    bodies = [*_bodies(1), orjson.dumps({"id": "y-only", "y": 5})]
    broker, plane = MemoryBroker(bodies), Plane()
    _run(broker, plane, batch_size=8)
    assert _outputs(broker) == {"r0": 2}
    assert [orjson.loads(d.body)["reason"] for d in broker.dead] == ["missing input columns: x"]
    assert sorted(tuple(f.columns) for f in plane.frames) == [("x",), ("y",)]


def test_a_model_that_is_unavailable_is_retried_then_dead_lettered() -> None:
    broker = MemoryBroker(_bodies(1))
    summary = _run(broker, Plane(unavailable=10), max_deliveries=3)
    assert broker.released == ["0", "0"]  # tries 1 and 2 go back to the broker
    [letter] = [orjson.loads(d.body) for d in broker.dead]
    assert letter["kind"] == "exhausted" and letter["deliveries"] == 3
    assert letter["reason"] == "failed 3 times; last: model m is overloaded"
    assert broker.acked == ["0"] and broker.results == []
    assert (summary.failed, summary.dead_lettered) == (2, 1)


def test_a_retried_record_that_then_succeeds_is_published_once() -> None:
    broker = MemoryBroker(_bodies(4))
    _run(broker, Plane(unavailable=1), max_deliveries=3)
    assert _outputs(broker) == {"r0": 8}
    assert broker.released == ["0"] and broker.acked == ["0"] and broker.dead == []


def test_a_failed_publish_acknowledges_nothing_and_hands_the_batch_back() -> None:
    broker = MemoryBroker(_bodies(1, 2))
    broker.fail_publishes = 1
    summary = _run(broker, Plane(), batch_size=8)
    assert broker.released == ["0", "1"]
    # Handed back, the batch comes round again and is published and acknowledged once.
    assert _outputs(broker) == {"r0": 2, "r1": 4} and broker.acked == ["0", "1"]
    assert summary.processed == 2


def test_an_unexpected_error_while_scoring_is_retried_then_dead_lettered() -> None:
    class Broken(Plane):
        async def predict(
            self, name: str | None, version: str | None, data: pd.DataFrame
        ) -> tuple[Served, dict[str, np.ndarray]]:
            raise RuntimeError("boom")

    broker = MemoryBroker(_bodies(1))
    summary = _run(broker, Broken(), max_deliveries=2)
    [letter] = [orjson.loads(d.body) for d in broker.dead]
    assert letter["kind"] == "exhausted"
    assert letter["reason"] == "failed 2 times; last: scoring failed: RuntimeError: boom"
    assert (summary.failed, summary.dead_lettered, broker.acked) == (1, 1, ["0"])


def test_a_stop_finishes_the_batch_in_hand() -> None:
    class StopAfterFetch(MemoryBroker):
        stop = asyncio.Event()

        async def fetch(self, max_messages: int, max_wait_s: float) -> list[Message]:
            self.stop.set()  # the signal arrives while a batch is being fetched
            return await super().fetch(max_messages, max_wait_s)

    broker = StopAfterFetch(_bodies(1, 2, 3, 4))
    metrics = StreamMetrics(CollectorRegistry(), broker.name, "in")
    settings = StreamSettings(batch_size=2, max_wait_ms=0)
    processor = StreamProcessor(broker, cast(DataPlane, Plane()), "m", settings, metrics)

    async def main() -> StreamSummary:
        broker.stop = asyncio.Event()
        return await processor.run(broker.stop)

    summary = asyncio.run(main())
    assert summary.processed == 2 and broker.acked == ["0", "1"]
    assert len(broker.queue) == 2  # left for the next consumer, never taken
