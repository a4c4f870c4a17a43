"""`shipyard logs show | prune | erase` on a real home, database (SQLite and PostgreSQL),
Redis stream and NATS JetStream stream."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import nats
import orjson
import pytest
import redis
from sqlalchemy import insert, select
from typer.testing import CliRunner, Result

from shipyard.cli import app
from shipyard.core.events import PredictionEvent, Sink
from shipyard.monitoring.eventlog import (
    ParquetSink,
    PredictionLogger,
    TableSink,
    load_or_create_key,
    read_events,
)
from shipyard.monitoring.eventlog.nats_stream import NatsStreamSink
from shipyard.monitoring.eventlog.redis_stream import RedisStreamSink
from shipyard.monitoring.feedback import key_digest
from shipyard.storage.database import Database
from shipyard.storage.deployments_table import FeedbackRow, PredictionRow
from shipyard.storage.tables import utcnow

REDIS_URL = "redis://127.0.0.1:6379/0"
NATS_URL = "nats://127.0.0.1:4222"


class Env:
    def __init__(self, home: Path, database_url: str, tag: str) -> None:
        self.home = home
        self.database_url = database_url
        self.redis_stream = f"test:cli-events:{tag}"
        self.nats_stream = f"TEST_CLI_{tag}"
        self.nats_prefix = f"testcli.{tag}."

    def run(self, *args: str) -> Result:
        env = {"SHIPYARD_HOME": str(self.home), "SHIPYARD_DATABASE_URL": self.database_url}
        return CliRunner().invoke(app, ["logs", *args], env=env)

    def streams(self) -> list[str]:
        return [
            *("--redis", REDIS_URL, "--redis-stream", self.redis_stream),
            *("--nats", NATS_URL, "--nats-stream", self.nats_stream),
        ]


@pytest.fixture
def env(tmp_path: Path, database_url: str) -> Iterator[Env]:
    e = Env(tmp_path / "home", database_url, secrets.token_hex(4))
    yield e
    client = redis.Redis.from_url(REDIS_URL)
    client.delete(e.redis_stream)
    client.close()
    asyncio.run(_delete_stream(e.nats_stream))


async def _delete_stream(name: str) -> None:
    nc = await nats.connect(NATS_URL)
    with contextlib.suppress(nats.js.errors.NotFoundError):
        await nc.jetstream().delete_stream(name)
    await nc.close()


def _log(env: Env, customers: list[str], age: timedelta = timedelta(0)) -> None:
    with Database(env.database_url) as db:
        sinks: list[Sink] = [
            ParquetSink(env.home),
            TableSink(db),
            RedisStreamSink(REDIS_URL, stream=env.redis_stream),
            NatsStreamSink(NATS_URL, stream=env.nats_stream, subject_prefix=env.nats_prefix),
        ]
        logger = PredictionLogger(
            sinks,
            hash_key=load_or_create_key(env.home),
            subject_column="customer",
            flush_interval_s=0.02,
        )
        with logger:
            for i, customer in enumerate(customers):
                logger.emit(
                    PredictionEvent(
                        request_id=f"{customer}-{i}",
                        model="fraud",
                        version=1,
                        at=datetime.now(UTC) - age,
                        inputs={"customer": [customer], "amount": [float(i)]},
                        outputs={"label": [i % 2]},
                        latency_ms=0.4,
                    )
                )


def test_show_prints_recent_events(env: Env) -> None:
    _log(env, ["ann", "ben", "cat"])
    result = env.run("show", "fraud", "--limit", "2")
    assert result.exit_code == 0, result.output
    assert "cat-2" in result.output and "ben-1" in result.output
    assert "ann-0" not in result.output
    shown = orjson.loads(env.run("show", "fraud", "--json", "--since", "1h").stdout)
    assert [e["request_id"] for e in shown] == ["cat-2", "ben-1", "ann-0"]
    assert shown[0]["output.label"] == [0]
    assert "no events logged for churn" in env.run("show", "churn").output


def test_erase_removes_one_subject_from_every_store(env: Env) -> None:
    _log(env, ["ann", "ben", "ann", "cat"])
    result = env.run("erase", "--key", "ann", *env.streams())
    assert result.exit_code == 0, result.output
    for store in ("parquet", "table", "redis", "nats"):
        assert f"{store}: removed 2" in result.output
    assert "erase: removed 8 in total" in result.output
    left = read_events(env.home)
    assert sorted(left["request_id"]) == ["ben-1", "cat-3"]
    again = env.run("erase", "--key", "ann", *env.streams(), "--json")
    assert orjson.loads(again.stdout)["removed"] == {
        "parquet": 0, "table": 0, "predictions": 0, "redis": 0, "nats": 0,
    }  # fmt: skip


def _record(env: Env, request_id: str, key: str, feedback: int | None) -> None:
    """A deployment's recorded prediction carrying `key`'s digest, and its ground truth."""
    digest = key_digest(load_or_create_key(env.home), key)
    with Database(env.database_url) as db, db.write() as session:
        session.execute(insert(PredictionRow), [{
            "request_id": request_id, "deployment": "d", "revision": 1, "model": "fraud",
            "version": 1, "at": utcnow(), "output": 1, "key": digest,
        }])  # fmt: skip
        if feedback is not None:
            row = {"request_id": request_id, "value": feedback, "at": utcnow(), "actor": "t"}
            session.execute(insert(FeedbackRow), [row])


def _recorded(env: Env) -> tuple[list[str], list[str]]:
    with Database(env.database_url) as db, db.read() as session:
        predictions = session.scalars(select(PredictionRow.request_id)).all()
        feedback = session.scalars(select(FeedbackRow.request_id)).all()
    return sorted(predictions), sorted(feedback)


def test_erase_removes_the_subjects_recorded_predictions_and_their_feedback(env: Env) -> None:
    """Feedback by business key keeps the key's digest beside each deployment prediction:
    erasure reaches those rows and the ground truth given for them, under either spelling of
    an integral id (logged from an int or a float column)."""
    _record(env, "r-1", "1234", feedback=1)
    _record(env, "r-2", "1234.0", feedback=None)
    _record(env, "r-3", "5678", feedback=0)
    result = env.run("erase", "--key", "1234", "--json")
    assert result.exit_code == 0, result.output
    assert orjson.loads(result.stdout)["removed"] == {"parquet": 0, "table": 0, "predictions": 3}
    assert _recorded(env) == (["r-3"], ["r-3"])


def test_erase_of_an_integral_id_finds_events_logged_from_a_float_column(env: Env) -> None:
    _log(env, [1234.0, 1234, 99])  # type: ignore[list-item]
    result = env.run("erase", "--key", "1234", *env.streams(), "--json")
    assert result.exit_code == 0, result.output
    assert orjson.loads(result.stdout)["removed"]["parquet"] == 2
    assert orjson.loads(result.stdout)["removed"] == {
        "parquet": 2, "table": 2, "predictions": 0, "redis": 2, "nats": 2,
    }  # fmt: skip
    assert list(read_events(env.home)["request_id"]) == ["99-2"]


def test_erase_of_an_unknown_key_removes_0(env: Env) -> None:
    _log(env, ["ann"])
    result = env.run("erase", "--key", "nobody")
    assert result.exit_code == 0, result.output
    assert "parquet: removed 0" in result.output and "table: removed 0" in result.output
    assert len(read_events(env.home)) == 1


def test_erase_with_the_wrong_hash_key_removes_nothing(env: Env) -> None:
    _log(env, ["ann"])
    result = env.run("erase", "--key", "ann", "--hash-key", "ab" * 32)
    assert "erase: removed 0 in total" in result.output
    assert len(read_events(env.home)) == 1


def test_prune_removes_old_events_from_every_store(env: Env) -> None:
    _log(env, ["old1", "old2"], age=timedelta(days=45))
    _log(env, ["new1"])
    result = env.run("prune", "--older-than", "30d", "--json")
    assert result.exit_code == 0, result.output
    assert orjson.loads(result.stdout)["removed"] == {"parquet": 2, "table": 2, "predictions": 0}
    assert list(read_events(env.home)["request_id"]) == ["new1-0"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["prune", "--older-than", "soon"], "cannot read 'soon' as a period"),
        (["prune", "--older-than", "0d"], "the period must be positive"),
        (["erase", "--key", ""], "the key to erase must not be empty"),
        (["erase", "--key", "ann", "--hash-key", "zz"], "must be hexadecimal"),
        (["show", "fraud", "--limit", "0"], "--limit must be between 1 and 10000, got 0"),
        (["show", "../x"], "must not contain '..'"),
    ],
)
def test_bad_input_refused_and_data_intact(env: Env, args: list[str], message: str) -> None:
    _log(env, ["ann"], age=timedelta(days=45))
    result = env.run(*args)
    assert result.exit_code != 0
    assert message in result.output
    assert len(read_events(env.home)) == 1


def test_a_store_that_is_down_fails_the_command_the_others_still_erase(env: Env) -> None:
    _log(env, ["ann"])
    result = env.run("erase", "--key", "ann", "--redis", "redis://127.0.0.1:1/0")
    assert result.exit_code != 0
    assert "parquet: removed 1" in result.output and "table: removed 1" in result.output
    assert "redis: FAILED (Unavailable: redis stream" in result.output
    assert "erase incomplete: redis failed; run it again" in result.output
