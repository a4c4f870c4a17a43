"""Prediction-log sinks against the real PostgreSQL (and SQLite), Redis and NATS JetStream.

Every test uses fresh stream names (removed afterwards) and a fresh database.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import nats
import pytest
import redis
from prometheus_client import CollectorRegistry
from sqlalchemy import select

from shipyard.core.events import PredictionEvent, Sink
from shipyard.monitoring.eventlog import (
    ParquetSink,
    ParquetStore,
    PredictionLogger,
    TableSink,
    digest,
    erase,
    prune,
    read_events,
)
from shipyard.monitoring.eventlog.nats_stream import NatsStreamSink
from shipyard.monitoring.eventlog.redis_stream import RedisStreamSink
from shipyard.monitoring.eventlog.retention import Store
from shipyard.storage.database import Database
from shipyard.storage.monitoring_table import PredictionEventRow

REDIS_URL = "redis://127.0.0.1:6379/0"
NATS_URL = "nats://127.0.0.1:4222"
CLOSED_PORT = 1  # nothing listens there: connection refused at once
KEY = bytes(range(32))
DROPPED = "shipyard_prediction_events_dropped_total"
RAW_SECRET = "RAW-SECRET-4242"
RAW_MAIL = "raw.mail@example.org"


def make_event(i: int, *, customer: str = "c", age: timedelta = timedelta(0)) -> PredictionEvent:
    return PredictionEvent(
        request_id=f"req-{i}",
        model="fraud",
        version=2,
        at=datetime.now(UTC) - age,
        inputs={"amount": [float(i), 1.0], "customer": [customer, customer]},
        outputs={"label": [1, 0]},
        latency_ms=0.25,
        deployment="fraud-prod",
    )


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    with Database(database_url) as db:
        yield db


@pytest.fixture
def redis_sink() -> Iterator[RedisStreamSink]:
    sink = RedisStreamSink(REDIS_URL, stream=f"test:events:{secrets.token_hex(4)}", max_len=10_000)
    yield sink
    client = redis.Redis.from_url(REDIS_URL)
    client.delete(sink.stream)
    client.close()


@pytest.fixture
def nats_sink() -> Iterator[NatsStreamSink]:
    tag = secrets.token_hex(4)
    sink = NatsStreamSink(NATS_URL, stream=f"TEST_EVENTS_{tag}", subject_prefix=f"test.{tag}.")
    yield sink
    asyncio.run(_delete_stream(sink.stream))


async def _delete_stream(name: str) -> None:
    nc = await nats.connect(NATS_URL)
    with contextlib.suppress(nats.js.errors.NotFoundError):
        await nc.jetstream().delete_stream(name)
    await nc.close()


def _logger(sinks: list[Sink], registry: CollectorRegistry | None = None) -> PredictionLogger:
    return PredictionLogger(
        sinks,
        hash_key=KEY,
        registry=registry,
        subject_column="customer",
        exclude=["ssn"],
        hash_columns=["email"],
        flush_interval_s=0.02,
    )


def test_table_round_trip_prune_and_erase(database: Database) -> None:
    sink = TableSink(database)
    events = [make_event(i, customer="alice" if i < 2 else "bob") for i in range(4)]
    old = [make_event(10 + i, customer="carol", age=timedelta(days=40)) for i in range(3)]
    with _logger([sink]) as logger:
        for e in events + old:
            logger.emit(e)
    with database.read() as session:
        rows = session.scalars(select(PredictionEventRow).order_by(PredictionEventRow.id)).all()
        assert [r.request_id for r in rows] == [e.request_id for e in events + old]
        first = rows[0]
        assert first.model == "fraud" and first.version == 2
        assert first.deployment == "fraud-prod" and first.event_id == events[0].event_id
        assert first.outputs == {"label": [1, 0]}
        assert first.inputs["amount"] == [0.0, 1.0]
        assert first.subject == digest(KEY, "alice")
        assert first.at == events[0].at
    assert prune([sink], timedelta(days=30)).removed == {"table": 3}
    assert erase([sink], "alice", KEY).removed == {"table": 2}
    assert erase([sink], "nobody", KEY).removed == {"table": 0}
    assert list(sink.recent("fraud")["request_id"]) == ["req-3", "req-2"]


def test_redis_round_trip_prune_and_erase(redis_sink: RedisStreamSink) -> None:
    sink = RedisStreamSink(REDIS_URL, stream=redis_sink.stream)
    first = [make_event(i, customer="alice") for i in range(3)]
    with _logger([sink]) as logger:
        for e in first:
            logger.emit(e)
    time.sleep(0.01)
    between = datetime.now(UTC)
    time.sleep(0.01)
    with _logger([RedisStreamSink(REDIS_URL, stream=redis_sink.stream)]) as logger:
        for i in range(3, 7):
            logger.emit(make_event(i, customer="bob" if i < 5 else "carol"))
    got = redis_sink.read()
    assert [e.request_id for e in got] == [f"req-{i}" for i in range(7)]
    assert got[0].outputs == {"label": [1, 0]} and got[0].subject == digest(KEY, "alice")
    assert got[0].event_id == first[0].event_id and got[0].at == first[0].at
    assert redis_sink.prune(between) == 3
    assert erase([redis_sink], "bob", KEY).removed == {"redis": 2}
    assert erase([redis_sink], "nobody", KEY).removed == {"redis": 0}
    assert [e.request_id for e in redis_sink.read()] == ["req-5", "req-6"]
    redis_sink.close()


def test_redis_stream_is_capped(redis_sink: RedisStreamSink) -> None:
    capped = RedisStreamSink(REDIS_URL, stream=redis_sink.stream, max_len=10)
    capped.write([make_event(i) for i in range(500)])
    capped.close()
    client = redis.Redis.from_url(REDIS_URL)
    length = int(client.xlen(redis_sink.stream))
    client.close()
    assert length < 500  # MAXLEN ~ trims whole nodes: approximately, never unbounded


def test_nats_round_trip_prune_and_erase(nats_sink: NatsStreamSink) -> None:
    first = [make_event(i, customer="alice") for i in range(3)]
    nats_sink.write(first)
    time.sleep(0.01)
    between = datetime.now(UTC)
    time.sleep(0.01)
    rest = [make_event(i, customer="bob" if i < 5 else "carol") for i in range(3, 7)]
    for e in rest:
        nats_sink.write([_with_subject(e, digest(KEY, "bob" if e.request_id < "req-5" else "x"))])
    got = nats_sink.read()
    assert [e.request_id for e in got] == [f"req-{i}" for i in range(7)]
    assert got[0] == first[0]
    assert nats_sink.prune(between) == 3
    assert erase([nats_sink], "bob", KEY).removed == {"nats": 2}
    assert erase([nats_sink], "nobody", KEY).removed == {"nats": 0}
    assert [e.request_id for e in nats_sink.read()] == ["req-5", "req-6"]
    nats_sink.close()


def test_nats_duplicate_publish_of_one_event_kept_once(nats_sink: NatsStreamSink) -> None:
    e = make_event(1)
    nats_sink.write([e])
    nats_sink.write([e])  # a retried batch: Nats-Msg-Id lets the server drop the copy
    assert len(nats_sink.read()) == 1
    nats_sink.close()


def test_unreachable_sinks_counted_others_get_everything(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    sinks: list[Sink] = [
        RedisStreamSink(f"redis://127.0.0.1:{CLOSED_PORT}/0", timeout_s=0.5),
        NatsStreamSink(f"nats://127.0.0.1:{CLOSED_PORT}", timeout_s=0.5),
        ParquetSink(tmp_path),
    ]
    logger = PredictionLogger(sinks, hash_key=KEY, registry=registry, flush_interval_s=0.02)
    for i in range(200):
        logger.emit(make_event(i))
    logger.close()
    assert len(read_events(tmp_path, explode=False)) == 200
    for name in ("redis", "nats"):
        lost = sum(
            registry.get_sample_value(DROPPED, {"reason": reason, "sink": name}) or 0.0
            for reason in ("sink_error", "sink_unavailable", "sink_backlog", "shutdown")
        )
        assert lost == 200, name
    assert registry.get_sample_value(DROPPED, {"reason": "sink_error", "sink": "parquet"}) is None


def test_excluded_and_hashed_values_never_reach_any_store(
    tmp_path: Path,
    database: Database,
    redis_sink: RedisStreamSink,
    nats_sink: NatsStreamSink,
) -> None:
    sinks: list[Sink] = [ParquetSink(tmp_path), TableSink(database), redis_sink, nats_sink]
    raw = PredictionEvent(
        request_id="req-secret",
        model="fraud",
        version=1,
        at=datetime.now(UTC),
        inputs={"ssn": [RAW_SECRET], "email": [RAW_MAIL], "customer": ["cust-9"], "x": [1]},
        outputs={"label": [1]},
        latency_ms=1.0,
    )
    with _logger(sinks) as logger:
        logger.emit(raw)
    stored: list[bytes] = [p.read_bytes() for p in tmp_path.rglob("*.parquet")]
    with database.read() as session:
        stored += [
            repr((r.inputs, r.outputs, r.subject)).encode()
            for r in session.scalars(select(PredictionEventRow))
        ]
    client = redis.Redis.from_url(REDIS_URL)
    stored += [repr(entry).encode() for entry in client.xrange(redis_sink.stream) or ()]
    client.close()
    stored += asyncio.run(_raw_nats(nats_sink))
    assert len(stored) == 4
    for blob in stored:
        assert RAW_SECRET.encode() not in blob
        assert RAW_MAIL.encode() not in blob
        assert b"cust-9" not in blob
        assert digest(KEY, RAW_MAIL).encode() in blob


async def _raw_nats(sink: NatsStreamSink) -> list[bytes]:
    nc = await nats.connect(NATS_URL)
    js = nc.jetstream()
    info = await js.stream_info(sink.stream)
    bodies = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        msg = await js.get_msg(sink.stream, seq)
        bodies.append((msg.data or b"") + repr(msg.headers).encode())
    await nc.close()
    return bodies


def test_all_stores_pruned_and_erased_together(
    tmp_path: Path, database: Database, redis_sink: RedisStreamSink
) -> None:
    sinks: list[Sink] = [ParquetSink(tmp_path), TableSink(database), redis_sink]
    with _logger(sinks) as logger:
        for i in range(5):
            logger.emit(make_event(i, customer="dora" if i % 2 else "eve"))
    stores: list[Store] = [ParquetStore(tmp_path), TableSink(database), redis_sink]
    removal = erase(stores, "dora", KEY)
    assert removal.removed == {"parquet": 2, "table": 2, "redis": 2}
    assert removal.failed == {}
    removal = prune(stores, timedelta(days=1), now=datetime.now(UTC) + timedelta(days=2))
    assert removal.removed == {"parquet": 3, "table": 3, "redis": 3}


def test_one_failing_store_does_not_stop_the_others(tmp_path: Path, database: Database) -> None:
    with _logger([TableSink(database)]) as logger:
        logger.emit(make_event(0, customer="finn"))
    down = RedisStreamSink(f"redis://127.0.0.1:{CLOSED_PORT}/0", timeout_s=0.5)
    removal = erase([down, TableSink(database)], "finn", KEY)
    assert removal.removed == {"table": 1}
    assert removal.failed["redis"].startswith("Unavailable: redis stream")
    assert "Connection refused" in removal.failed["redis"]
    down.close()


def _with_subject(e: PredictionEvent, subject: str) -> PredictionEvent:
    fields = {f: getattr(e, f) for f in e.__dataclass_fields__}
    return PredictionEvent(**{**fields, "subject": subject})


def test_table_skips_an_event_stored_twice(database: Database) -> None:
    sink = TableSink(database)
    e = make_event(1)
    sink.write([e])
    sink.write([e, make_event(2)])  # the repeat does not cost the batch its other event
    assert sorted(sink.recent("fraud")["request_id"]) == ["req-1", "req-2"]
