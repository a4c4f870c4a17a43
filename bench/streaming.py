"""`shipyard stream` records/s end to end per broker, beside a thin consumer floor.

For each broker (Redis Streams, NATS JetStream, RabbitMQ on 127.0.0.1) the same N JSON
records are written to a fresh input, then consumed two ways, in the same run:

- shipyard: `app.stream.run_stream` in this process (ModelHost + DataPlane + Batcher, the
  broker adapter of `jobs.stream`), batch 64; timed from its first lag reading (model loaded,
  connected) until the Prometheus counter says N were processed (polled every 10 ms);
- floor: a bare loop with the same client library: fetch 64, orjson.loads each, a numpy
  row in feature order, one onnxruntime call (1 thread) on the same compiled ONNX model,
  orjson.dumps each result, publish (same confirmations as shipyard) and acknowledge.

Both publish every result and acknowledge after publishing. Rounds alternate the two paths;
the median records/s is shown. Bounded: N records x rounds, seconds per broker.

    .venv/bin/python bench/streaming.py [--records 3000] [--rounds 3] [--markdown FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import secrets
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aio_pika
import nats
import numpy as np
import orjson
import pandas as pd
import redis.asyncio as aioredis
from nats.errors import TimeoutError as NatsTimeout
from prometheus_client import CollectorRegistry

from shipyard.app.settings import Settings
from shipyard.app.stream import StreamSpec, run_stream
from shipyard.jobs.stream.loop import StreamSettings

FEATURES = [f"f{i}" for i in range(8)]
BATCH = 64
REDIS_URL = "redis://127.0.0.1:6379/0"
NATS_URL = "nats://127.0.0.1:4222"
AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
TIMEOUT_S = 120.0


@dataclass
class Result:
    broker: str
    path: str
    records: int
    seconds: float

    @property
    def per_s(self) -> float:
        return self.records / self.seconds


def build_model(home: Path) -> Path:
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier

    from shipyard import Registry

    X, y = make_classification(2000, len(FEATURES), random_state=0)
    frame = pd.DataFrame(X, columns=FEATURES)
    model = RandomForestClassifier(20, max_depth=8, random_state=0).fit(frame, y)
    with Registry(settings=Settings(home=home)) as registry:
        version = registry.register(model, "rf", sample_input=frame.head(100))
        return Path(registry.store.artifact_paths(version)["compiled/model.onnx"])


def make_records(count: int) -> list[bytes]:
    rng = np.random.default_rng(1)
    values = rng.normal(size=(count, len(FEATURES)))
    return [
        orjson.dumps({"id": f"r{i}", **dict(zip(FEATURES, row.tolist(), strict=True))})
        for i, row in enumerate(values)
    ]


class Session:
    """onnxruntime on one thread, as shipyard runs it."""

    def __init__(self, path: Path) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name

    def score(self, bodies: list[bytes]) -> list[bytes]:
        records = [orjson.loads(b) for b in bodies]
        rows = np.array([[r[f] for f in FEATURES] for r in records], dtype=np.float32)
        label, proba = self.session.run(None, {self.input: rows})
        return [
            orjson.dumps(
                {"id": r["id"], "outputs": {"predict": int(k), "predict_proba": p.tolist()}}
            )
            for r, k, p in zip(records, label, proba, strict=True)
        ]


# -- the brokers: fresh names, produce, the floor loop, clean up -------------------------------


class Redis:
    name = "redis"
    url = REDIS_URL

    async def setup(self, tag: str) -> None:
        self.client = aioredis.Redis.from_url(REDIS_URL)
        self.input, self.output, self.dlq = (
            f"bench-{tag}-in",
            f"bench-{tag}-out",
            f"bench-{tag}-dlq",
        )

    async def produce(self, bodies: list[bytes]) -> None:
        for start in range(0, len(bodies), 1000):
            async with self.client.pipeline(transaction=False) as pipe:
                for body in bodies[start : start + 1000]:
                    pipe.xadd(self.input, {"data": body})
                await pipe.execute()

    async def floor(self, session: Session, count: int) -> float:
        c = self.client
        await c.xgroup_create(self.input, "floor", id="0", mkstream=True)
        start, done = time.perf_counter(), 0
        while done < count:
            reply: Any = await c.xreadgroup(
                "floor", "f", {self.input: ">"}, count=BATCH, block=1000
            )
            entries = reply[0][1]
            results = session.score([fields[b"data"] for _, fields in entries])
            async with c.pipeline(transaction=True) as pipe:
                for body in results:
                    pipe.xadd(self.output, {"data": body})
                await pipe.execute()
            await c.xack(self.input, "floor", *[i for i, _ in entries])
            done += len(entries)
        return time.perf_counter() - start

    async def cleanup(self) -> None:
        await self.client.delete(self.input, self.output, self.dlq)
        await self.client.aclose()


class Nats:
    name = "nats"
    url = NATS_URL

    async def setup(self, tag: str) -> None:
        self.nc = await nats.connect(NATS_URL)
        self.js = self.nc.jetstream()
        self.stream = f"BENCH_{tag}"
        self.input, self.output, self.dlq = (
            f"bench.{tag}.in",
            f"bench.{tag}.out",
            f"bench.{tag}.dlq",
        )
        await self.js.add_stream(name=self.stream, subjects=[self.input, self.output, self.dlq])

    async def produce(self, bodies: list[bytes]) -> None:
        for start in range(0, len(bodies), 1000):
            await asyncio.gather(
                *(self.js.publish(self.input, b) for b in bodies[start : start + 1000])
            )

    async def floor(self, session: Session, count: int) -> float:
        sub = await self.js.pull_subscribe(self.input, durable="floor", stream=self.stream)
        start, done = time.perf_counter(), 0
        while done < count:
            try:
                msgs = await sub.fetch(BATCH, timeout=1)
            except NatsTimeout:
                continue
            results = session.score([m.data for m in msgs])
            await asyncio.gather(*(self.js.publish(self.output, body) for body in results))
            for m in msgs:
                await m.ack()
            done += len(msgs)
        return time.perf_counter() - start

    async def cleanup(self) -> None:
        await self.js.delete_stream(self.stream)
        await self.nc.close()


class Amqp:
    name = "amqp"
    url = AMQP_URL

    async def setup(self, tag: str) -> None:
        self.connection = await aio_pika.connect(AMQP_URL)
        self.channel = await self.connection.channel(publisher_confirms=True)
        self.input, self.output, self.dlq = (
            f"bench-{tag}-in",
            f"bench-{tag}-out",
            f"bench-{tag}-dlq",
        )
        for name in (self.input, self.output, self.dlq):
            await self.channel.declare_queue(name, durable=True)

    async def produce(self, bodies: list[bytes]) -> None:
        exchange = self.channel.default_exchange
        for start in range(0, len(bodies), 1000):
            await asyncio.gather(
                *(
                    exchange.publish(_persistent(b), routing_key=self.input)
                    for b in bodies[start : start + 1000]
                )
            )

    async def floor(self, session: Session, count: int) -> float:
        channel = await self.connection.channel(publisher_confirms=True)
        await channel.set_qos(prefetch_count=2 * BATCH)
        queue = await channel.declare_queue(self.input, durable=True)
        arrived: asyncio.Queue[aio_pika.abc.AbstractIncomingMessage] = asyncio.Queue()
        start, done = time.perf_counter(), 0
        tag = await queue.consume(arrived.put)
        while done < count:
            batch = [await arrived.get()]
            while len(batch) < BATCH and not arrived.empty():
                batch.append(arrived.get_nowait())
            results = session.score([m.body for m in batch])
            await asyncio.gather(
                *(
                    channel.default_exchange.publish(_persistent(b), routing_key=self.output)
                    for b in results
                )
            )
            for m in batch:
                await m.ack()
            done += len(batch)
        elapsed = time.perf_counter() - start
        await queue.cancel(tag)
        await channel.close()
        return elapsed

    async def cleanup(self) -> None:
        for name in (self.input, self.output, self.dlq):
            await self.channel.queue_delete(name)
        await self.connection.close()


def _persistent(body: bytes) -> aio_pika.Message:
    """As shipyard publishes: durable queues keep persistent messages across a restart."""
    return aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT)


async def shipyard_run(home: Path, broker: Any, count: int) -> float:
    registry = CollectorRegistry()
    spec = StreamSpec(
        "rf",
        broker.url,
        broker.input,
        broker.output,
        dlq=broker.dlq,
        settings=StreamSettings(batch_size=BATCH),
    )
    stop = asyncio.Event()
    labels = {"broker": broker.name, "source": broker.input}

    async def watch() -> float:
        deadline = time.monotonic() + TIMEOUT_S
        while registry.get_sample_value("shipyard_stream_lag", labels) is None:
            await asyncio.sleep(0.002)
            assert time.monotonic() < deadline, "the consumer did not start"
        start = time.perf_counter()
        # A registry collection costs ~1 ms (serving metrics included): poll at 100 Hz.
        while (registry.get_sample_value("shipyard_stream_processed_total", labels) or 0) < count:
            await asyncio.sleep(0.01)
            assert time.monotonic() < deadline, "the consumer stalled"
        elapsed = time.perf_counter() - start
        stop.set()
        return elapsed

    watcher = asyncio.create_task(watch())
    await run_stream(Settings(home=home), spec, stop, registry)
    return await watcher


async def one(
    home: Path, make: Callable[[], Any], bodies: list[bytes], path: str, session: Session
) -> float:
    broker = make()
    await broker.setup(secrets.token_hex(4))
    try:
        await broker.produce(bodies)
        run: Awaitable[float] = (
            shipyard_run(home, broker, len(bodies))
            if path == "shipyard"
            else broker.floor(session, len(bodies))
        )
        return await asyncio.wait_for(run, TIMEOUT_S)
    finally:
        await broker.cleanup()


def table(results: list[Result]) -> str:
    lines = [
        "| broker | path | records | median s | records/s | vs floor |",
        "|---|---|---:|---:|---:|---:|",
    ]
    floors = {r.broker: r.per_s for r in results if r.path == "floor"}
    for r in results:
        ratio = r.per_s / floors[r.broker] if r.broker in floors else float("nan")
        lines.append(
            f"| {r.broker} | {r.path} | {r.records:,} | {r.seconds:.2f} | {r.per_s:,.0f} | "
            f"{ratio:.2f}x |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--brokers", default="redis,nats,amqp")
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    makers: dict[str, Callable[[], Any]] = {"redis": Redis, "nats": Nats, "amqp": Amqp}
    bodies = make_records(args.records)
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        session = Session(build_model(home))
        results: list[Result] = []
        for name in args.brokers.split(","):
            times: dict[str, list[float]] = {"shipyard": [], "floor": []}
            for _ in range(args.rounds):
                for path in ("shipyard", "floor"):
                    seconds = asyncio.run(one(home, makers[name], bodies, path, session))
                    times[path].append(seconds)
                    print(f"{name} {path}: {len(bodies) / seconds:,.0f} records/s", flush=True)
            for path, values in times.items():
                results.append(Result(name, path, len(bodies), statistics.median(values)))
    load = os.getloadavg()[0]
    header = (
        f"bench/streaming.py — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC — {platform.node()} "
        f"({os.cpu_count()} CPUs, {platform.machine()}), Python {platform.python_version()}, "
        f"1-min load average after: {load:.2f}; {args.records:,} records x {args.rounds} rounds, "
        f"batch {BATCH}, RandomForest 20 trees depth 8 on {len(FEATURES)} features (ONNX)"
    )
    text = f"{header}\n\n{table(results)}\n"
    print(text)
    if args.markdown is not None:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(text)


if __name__ == "__main__":
    main()
