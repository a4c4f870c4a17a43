"""`shipyard stream` on the command line: every refusal has its exit code and one readable
line; a happy run prints its summary; the Prometheus counters count what happened."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest
import redis
from prometheus_client import CollectorRegistry
from sklearn.linear_model import LogisticRegression
from typer.testing import CliRunner

from shipyard import Registry
from shipyard.app.settings import Settings
from shipyard.app.stream import StreamSpec, run_stream
from shipyard.cli import app
from shipyard.jobs.stream.loop import StreamSettings

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("stream-cli-home")
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(100, 2)), columns=["x", "y"])
    with Registry(settings=Settings(home=home)) as registry:
        model = LogisticRegression().fit(frame, (frame["x"] > 0).astype(int))
        registry.register(model, "lr", sample_input=frame.head(20))
    return home


@pytest.fixture
def names() -> Iterator[tuple[str, str, str]]:
    tag = secrets.token_hex(4)
    found = (f"sy-cli-{tag}-in", f"sy-cli-{tag}-out", f"sy-cli-{tag}-in.dlq")
    yield found
    client = redis.Redis.from_url(REDIS_URL)
    client.delete(*found)
    client.close()


def _invoke(home: Path, *args: str) -> tuple[int, str]:
    """The exit code and what was printed (stdout and stderr)."""
    result = CliRunner().invoke(app, ["stream", *args], env={"SHIPYARD_HOME": str(home)})
    return result.exit_code, result.output


def _stdout(home: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["stream", *args], env={"SHIPYARD_HOME": str(home)})
    return result.exit_code, result.stdout


def _args(source: str, input: str = "in", output: str = "out", ref: str = "lr") -> list[str]:
    return [ref, "--source", source, "--input", input, "--output", output]


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (_args("kafka://127.0.0.1:9092"), 3, "unknown broker 'kafka'"),
        (_args("127.0.0.1:6379"), 3, "unknown broker"),
        (_args(REDIS_URL, input="same", output="same"), 3, "three different names"),
        ([*_args(REDIS_URL), "--dlq", "in"], 3, "three different names"),
        (_args(REDIS_URL, input="has space"), 3, "--input 'has space' must be"),
        ([*_args(REDIS_URL), "--batch-size", "0"], 3, "--batch-size must be 1..10000"),
        ([*_args(REDIS_URL), "--max-wait-ms", "-1"], 3, "--max-wait-ms must be"),
        ([*_args(REDIS_URL), "--max-deliveries", "0"], 3, "--max-deliveries must be"),
        ([*_args(REDIS_URL), "--id-field", ""], 3, "--id-field must not be empty"),
        ([*_args(REDIS_URL), "--claim-idle-s", "0"], 3, "--claim-idle-s must be"),
        (_args(REDIS_URL, ref="nosuchmodel"), 4, "nosuchmodel"),
        (_args("redis://127.0.0.1:1/0"), 11, "redis: ConnectionError"),
        (_args("nats://127.0.0.1:1"), 11, "nats: NoServersError"),
        (_args("amqp://guest:wrong@127.0.0.1:5672/"), 7, "amqp: the broker refused the login"),
        (_args("nats://127.0.0.1:4222", input="sy.nostream.in"), 6, "no JetStream stream"),
    ],
)
def test_refusals_have_an_exit_code_and_a_reason(
    home: Path, args: list[str], code: int, words: str
) -> None:
    exit_code, output = _invoke(home, *args)
    assert exit_code == code, output
    assert words in output
    assert "Traceback" not in output


def test_missing_source_is_a_usage_error(home: Path) -> None:
    exit_code, output = _invoke(home, "lr", "--input", "in", "--output", "out")
    assert exit_code == 2
    assert "--source" in output


def test_until_empty_scores_everything_and_prints_a_json_summary(
    home: Path, names: tuple[str, str, str]
) -> None:
    source, output, _ = names
    client = redis.Redis.from_url(REDIS_URL)
    for i in range(30):
        client.xadd(source, {"data": orjson.dumps({"id": i, "x": i / 10 - 1.5, "y": 0.0})})
    args = [*_args(REDIS_URL, source, output), "--until-empty", "--json"]
    exit_code, printed = _stdout(home, *args)
    assert exit_code == 0, printed
    summary = orjson.loads(printed)
    assert (summary["processed"], summary["dead_lettered"], summary["lag"]) == (30, 0, 0)
    entries: Any = client.xrange(output)
    ids = {orjson.loads(fields[b"data"])["id"] for _, fields in entries}
    assert ids == {str(i) for i in range(30)}
    client.close()


def test_metrics_count_processed_dead_lettered_and_lag(
    home: Path, names: tuple[str, str, str]
) -> None:
    source, output, dlq = names
    client = redis.Redis.from_url(REDIS_URL)
    for i in range(12):
        client.xadd(source, {"data": orjson.dumps({"id": i, "x": 1.0, "y": 2.0})})
    client.xadd(source, {"data": b"nope"})
    client.xadd(source, {"data": b'{"x": "text", "y": 1}'})
    client.close()
    registry = CollectorRegistry()
    spec = StreamSpec("lr", REDIS_URL, source, output, settings=StreamSettings(until_empty=True))
    summary = asyncio.run(run_stream(Settings(home=home), spec, asyncio.Event(), registry))
    labels = {"broker": "redis", "source": source}
    assert registry.get_sample_value("shipyard_stream_processed_total", labels) == 12
    for kind in ("malformed", "rejected"):
        value = registry.get_sample_value(
            "shipyard_stream_dead_lettered_total", {**labels, "kind": kind}
        )
        assert value == 1, kind
    assert registry.get_sample_value("shipyard_stream_lag", labels) == 0
    assert summary.dead_lettered == 2
    assert dlq == f"{source}.dlq"  # the default dead-letter name
    assert redis.Redis.from_url(REDIS_URL).xlen(dlq) == 2
