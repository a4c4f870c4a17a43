"""`shipyard stream` against the real Redis, NATS JetStream and RabbitMQ on this machine.

Each test uses fresh stream/subject/queue names and removes them afterwards. Consumers run
in-process (through app.stream.run_stream) except in the crash test, which kills a real
`shipyard stream` process with SIGKILL and lets a second one finish the work.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import aio_pika
import nats
import numpy as np
import orjson
import pandas as pd
import pytest
import redis.asyncio as aioredis
from sklearn.ensemble import RandomForestClassifier

from shipyard import Registry
from shipyard.app.settings import Settings
from shipyard.app.stream import StreamSpec, run_stream
from shipyard.jobs.stream.loop import StreamSettings, StreamSummary
from shipyard.jobs.stream.redis_streams import client_name

REDIS_URL = "redis://127.0.0.1:6379/0"
NATS_URL = "nats://127.0.0.1:4222"
AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
FEATURES = ["a", "b", "c", "n"]
TIMEOUT_S = 60.0


class Helper(Protocol):
    """Test-side access to one broker: make names, write inputs, read what came out."""

    url: str
    input: str
    output: str
    dlq: str

    async def setup(self) -> None: ...

    async def produce(self, bodies: list[bytes]) -> None: ...

    async def read(self, name: str) -> list[bytes]: ...

    async def count(self, name: str) -> int: ...

    async def cleanup(self) -> None: ...


class RedisHelper:
    url = REDIS_URL

    def __init__(self, tag: str) -> None:
        self.input, self.output, self.dlq = f"sy-{tag}-in", f"sy-{tag}-out", f"sy-{tag}-dlq"
        self.client = aioredis.Redis.from_url(REDIS_URL)

    async def setup(self) -> None:
        await self.client.ping()

    async def produce(self, bodies: list[bytes]) -> None:
        async with self.client.pipeline(transaction=False) as pipe:
            for body in bodies:
                pipe.xadd(self.input, {"data": body})
            await pipe.execute()

    async def read(self, name: str) -> list[bytes]:
        entries: Any = await self.client.xrange(name)
        return [fields[b"data"] for _, fields in entries]

    async def count(self, name: str) -> int:
        return int(await self.client.xlen(name))

    async def cleanup(self) -> None:
        await self.client.delete(self.input, self.output, self.dlq)
        await self.client.aclose()


class NatsHelper:
    url = NATS_URL

    def __init__(self, tag: str) -> None:
        self.stream = f"SY_{tag}"
        self.input, self.output, self.dlq = f"sy.{tag}.in", f"sy.{tag}.out", f"sy.{tag}.dlq"

    async def setup(self) -> None:
        self.nc = await nats.connect(NATS_URL, connect_timeout=5)
        self.js = self.nc.jetstream()
        await self.js.add_stream(name=self.stream, subjects=[self.input, self.output, self.dlq])

    async def produce(self, bodies: list[bytes]) -> None:
        await asyncio.gather(*(self.js.publish(self.input, body) for body in bodies))

    async def read(self, name: str) -> list[bytes]:
        """Every message on `name`, through an ephemeral consumer, in batches."""
        total = await self.count(name)
        found: list[bytes] = []
        if total == 0:
            return found
        sub = await self.js.pull_subscribe(name, stream=self.stream)
        try:
            while len(found) < total:
                for msg in await sub.fetch(min(500, total - len(found)), timeout=5):
                    found.append(msg.data)
        finally:
            await sub.unsubscribe()
        return found

    async def count(self, name: str) -> int:
        info = await self.js.stream_info(self.stream, subjects_filter=name)
        return int((info.state.subjects or {}).get(name, 0))

    async def cleanup(self) -> None:
        await self.js.delete_stream(self.stream)
        await self.nc.close()


class AmqpHelper:
    """Reading a queue consumes it, so what was read is kept for the next read."""

    url = AMQP_URL

    def __init__(self, tag: str) -> None:
        self.input, self.output, self.dlq = f"sy-{tag}-in", f"sy-{tag}-out", f"sy-{tag}-dlq"
        self.seen: dict[str, list[bytes]] = {}

    async def setup(self) -> None:
        self.connection = await aio_pika.connect(AMQP_URL, timeout=5)
        self.channel = await self.connection.channel(publisher_confirms=True)
        for name in (self.input, self.output, self.dlq):
            await self.channel.declare_queue(name, durable=True)

    async def produce(self, bodies: list[bytes]) -> None:
        exchange = self.channel.default_exchange
        await asyncio.gather(
            *(exchange.publish(aio_pika.Message(body), routing_key=self.input) for body in bodies)
        )

    async def read(self, name: str) -> list[bytes]:
        queue = await self.channel.declare_queue(name, passive=True)
        seen = self.seen.setdefault(name, [])
        while (message := await queue.get(no_ack=True, fail=False)) is not None:
            seen.append(message.body)
        return list(seen)

    async def count(self, name: str) -> int:
        raw = await self.channel.get_underlay_channel()
        declared = await raw.queue_declare(name, passive=True)
        return len(self.seen.get(name, ())) + int(declared.message_count or 0)

    async def cleanup(self) -> None:
        for name in (self.input, self.output, self.dlq):
            await self.channel.queue_delete(name)
        await self.connection.close()


HELPERS: dict[str, Callable[[str], Helper]] = {
    "redis": RedisHelper,
    "nats": NatsHelper,
    "amqp": AmqpHelper,
}


def _model() -> tuple[RandomForestClassifier, pd.DataFrame]:
    rng = np.random.default_rng(3)
    frame = pd.DataFrame(rng.normal(size=(300, 3)), columns=FEATURES[:3])
    frame["n"] = rng.integers(-5, 5, 300).astype(np.int64)
    labels = (frame["a"] + 0.1 * frame["n"] > 0).astype(int)
    return RandomForestClassifier(8, max_depth=5, random_state=0).fit(frame, labels), frame


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A registry with model `rf` (the ONNX-compiled fast path serves it)."""
    home = tmp_path_factory.mktemp("stream-home")
    with Registry(settings=Settings(home=home)) as registry:
        model, frame = _model()
        registry.register(model, "rf", sample_input=frame.head(50))
    yield home


def _records(count: int, seed: int = 0, prefix: str = "r") -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    return [
        {
            "id": f"{prefix}{i}",
            "a": float(rng.normal()),
            "b": float(rng.normal()),
            "c": float(rng.normal()),
            "n": int(rng.integers(-5, 5)),
        }
        for i in range(count)
    ]


def _expected(home: Path, records: list[dict[str, Any]]) -> dict[str, int]:
    with Registry(settings=Settings(home=home)) as registry:
        frame = pd.DataFrame.from_records(records)
        outputs = registry.load("rf").infer(frame[FEATURES])
    return {r["id"]: int(p) for r, p in zip(records, outputs["predict"], strict=True)}


def _run(helper_name: str, body: Callable[[Helper], Awaitable[None]]) -> None:
    async def main() -> None:
        helper = HELPERS[helper_name](secrets.token_hex(4))
        await helper.setup()
        try:
            await asyncio.wait_for(body(helper), TIMEOUT_S)
        finally:
            await helper.cleanup()

    asyncio.run(main())


def _spec(helper: Helper, **settings: Any) -> StreamSpec:
    consumer = settings.pop("consumer", None)
    return StreamSpec(
        "rf",
        helper.url,
        helper.input,
        helper.output,
        dlq=helper.dlq,
        consumer=consumer,
        claim_idle_s=settings.pop("claim_idle_s", 30.0),
        settings=StreamSettings(until_empty=True, **settings),
    )


def _by_id(bodies: list[bytes]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for body in bodies:
        value = orjson.loads(body)
        found.setdefault(value["id"], []).append(value)
    return found


BROKERS = pytest.mark.parametrize("broker", ["redis", "nats", "amqp"])


@BROKERS
def test_every_record_is_scored_once_like_the_model(broker: str, home: Path) -> None:
    records = _records(150)
    expected = _expected(home, records)

    async def body(helper: Helper) -> None:
        await helper.produce([orjson.dumps(r) for r in records])
        summary = await run_stream(
            Settings(home=home), _spec(helper, batch_size=16), asyncio.Event()
        )
        results = _by_id(await helper.read(helper.output))
        assert (summary.processed, summary.dead_lettered, summary.failed) == (150, 0, 0)
        assert sorted(results) == sorted(expected)
        assert all(len(found) == 1 for found in results.values())
        assert {k: v[0]["outputs"]["predict"] for k, v in results.items()} == expected
        first = results["r0"][0]
        assert (first["model"], first["version"]) == ("rf", 1)
        assert len(first["outputs"]["predict_proba"]) == 2
        assert await helper.read(helper.dlq) == []
        assert summary.lag == 0

    _run(broker, body)


@BROKERS
def test_bad_records_go_to_the_dlq_with_a_reason_and_the_stream_flows(
    broker: str, home: Path
) -> None:
    good = _records(20)
    bad: list[tuple[bytes, str, str]] = [  # body, kind, words of the reason
        (b"{not json", "malformed", "not JSON"),
        (b"[1, 2, 3]", "malformed", "got a array"),
        (b'{"id": "nest", "a": {"x": 1}, "b": 1, "c": 1, "n": 1}', "malformed", "feature 'a'"),
        (b'{"id": [1], "a": 1}', "malformed", "field 'id' must be a string or integer"),
        (b'{"id": "empty"}', "malformed", "no features"),
        (b"", "malformed", "empty message"),
        (b'{"id": "miss", "a": 1, "b": 2, "n": 1}', "rejected", "missing input columns: c"),
        (b'{"id": "text", "a": "abc", "b": 1, "c": 1, "n": 1}', "rejected", "non-numeric"),
        (b'{"id": "frac", "a": 1, "b": 1, "c": 1, "n": 1.5}', "rejected", "fractional"),
    ]
    # Poison in the middle of a batch and alone, with good records after it.
    bodies = [orjson.dumps(r) for r in good[:10]] + [b for b, _, _ in bad]
    bodies += [orjson.dumps(r) for r in good[10:]]

    async def body(helper: Helper) -> None:
        await helper.produce(bodies)
        summary = await run_stream(
            Settings(home=home), _spec(helper, batch_size=8), asyncio.Event()
        )
        assert (summary.processed, summary.dead_lettered) == (20, len(bad))
        results = _by_id(await helper.read(helper.output))
        assert sorted(results) == sorted(r["id"] for r in good)
        letters = [orjson.loads(b) for b in await helper.read(helper.dlq)]
        by_body = {letter["body"]: letter for letter in letters}
        assert len(by_body) == len(bad)
        for raw, kind, words in bad:
            letter = by_body[raw.decode()]
            assert letter["kind"] == kind, letter
            assert words in letter["reason"], letter
            assert letter["deliveries"] == 1
            assert letter["message_id"]
        assert by_body['{"id": "miss", "a": 1, "b": 2, "n": 1}']["id"] == "miss"

    _run(broker, body)


@BROKERS
def test_two_consumers_of_one_group_split_the_work(broker: str, home: Path) -> None:
    records = _records(300, seed=1)

    async def body(helper: Helper) -> None:
        await helper.produce([orjson.dumps(r) for r in records])
        settings = Settings(home=home)
        summaries: list[StreamSummary] = await asyncio.gather(
            *(
                run_stream(settings, _spec(helper, batch_size=4, consumer=name), asyncio.Event())
                for name in ("one", "two")
            )
        )
        results = _by_id(await helper.read(helper.output))
        assert sorted(results) == sorted(r["id"] for r in records)
        assert all(len(found) == 1 for found in results.values())
        assert [s.processed > 0 for s in summaries] == [True, True]
        assert sum(s.processed for s in summaries) == len(records)

    _run(broker, body)


def _consumer(home: Path, helper: Helper, name: str, log: Path) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "shipyard", "stream", "rf", "--source", helper.url]
    command += ["--input", helper.input, "--output", helper.output, "--dlq", helper.dlq]
    command += ["--consumer", name, "--batch-size", "4", "--claim-idle-s", "1"]
    with log.open("wb") as sink:
        return subprocess.Popen(
            command,
            env={**os.environ, "SHIPYARD_HOME": str(home)},
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


async def _wait_for(what: str, check: Callable[[], Awaitable[bool]], poll_s: float = 0.2) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(poll_s)


@BROKERS
def test_a_consumer_killed_mid_stream_loses_nothing(
    broker: str, home: Path, tmp_path: Path
) -> None:
    records = _records(1000, seed=2)
    expected = _expected(home, records)

    async def body(helper: Helper) -> None:
        await helper.produce([orjson.dumps(r) for r in records])
        first = _consumer(home, helper, "first", tmp_path / "first.log")
        try:
            await _wait_for("results", lambda: _has_results(helper, 20), poll_s=0.02)
        finally:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait()
        done = len(_by_id(await helper.read(helper.output)))
        assert done < len(records), "the first consumer finished before it was killed"
        second = _consumer(home, helper, "second", tmp_path / "second.log")
        try:
            await _wait_for("every record", lambda: _has_all(helper, expected))
        finally:
            second.send_signal(signal.SIGTERM)
            code = second.wait(TIMEOUT_S)
        log = (tmp_path / "second.log").read_text()
        assert code == 0, log
        assert "processed" in log and "records/s" in log
        results = _by_id(await helper.read(helper.output))
        for key, found in results.items():  # duplicates only as identical rewrites
            assert all(f["outputs"] == found[0]["outputs"] for f in found), key
            assert found[0]["outputs"]["predict"] == expected[key]
        assert await helper.read(helper.dlq) == []

    _run(broker, body)


async def _has_results(helper: Helper, count: int) -> bool:
    return await helper.count(helper.output) >= count


async def _has_all(helper: Helper, expected: dict[str, int]) -> bool:
    return set(_by_id(await helper.read(helper.output))) >= set(expected)


def test_redis_connections_killed_mid_stream_reconnect_and_lose_nothing(home: Path) -> None:
    """The server side drops the consumer's connections (CLIENT KILL, as a restarting Redis
    would); the consumer reconnects and every record is still scored."""
    records = _records(800, seed=4)

    async def body(helper: Helper) -> None:
        assert isinstance(helper, RedisHelper)
        await helper.produce([orjson.dumps(r) for r in records])
        stop = asyncio.Event()
        spec = _spec(helper, batch_size=4, consumer="victim", claim_idle_s=1.0)
        spec = dataclasses.replace(spec, settings=StreamSettings(batch_size=4))
        task = asyncio.create_task(run_stream(Settings(home=home), spec, stop))
        await _wait_for("results", lambda: _has_results(helper, 50), poll_s=0.02)
        name = client_name(spec.endpoints())
        clients: Any = await helper.client.client_list()
        victims = [c["id"] for c in clients if c.get("name") == name]
        assert victims, "the consumer's connections are named"
        for victim in victims:
            await helper.client.client_kill_filter(_id=victim)
        assert await helper.count(helper.output) < len(records), "finished before the kill"
        try:
            await _wait_for("every record", lambda: _has_all_ids(helper, records))
        finally:
            stop.set()
            summary = await task
        assert summary.processed >= len(records)
        assert await helper.read(helper.dlq) == []


async def _has_all_ids(helper: Helper, records: list[dict[str, Any]]) -> bool:
    return set(_by_id(await helper.read(helper.output))) >= {r["id"] for r in records}
