"""`shipyard serve` logs every answered request: to the registry's table on PostgreSQL and a
Redis stream at once (real servers), with configured columns dropped or hashed; bad sink
settings are refused before anything starts."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
import redis
from serve_support import open_registry, running, server_env
from sklearn.linear_model import LogisticRegression
from sqlalchemy import select
from typer.testing import CliRunner

from shipyard.cli import app as cli
from shipyard.monitoring.eventlog import digest, load_or_create_key
from shipyard.storage.database import Database
from shipyard.storage.monitoring_table import PredictionEventRow

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


def test_requests_are_logged_to_the_table_and_a_redis_stream(
    tmp_path: Path, postgres_url: str
) -> None:
    home = tmp_path / "home"
    frame = pd.DataFrame(
        {"age": [30, 40, 50, 60] * 5, "income": [1.0, 2.0, 3.0, 4.0] * 5, "ssn": ["a"] * 20}
    )
    model = LogisticRegression().fit(frame[["age", "income"]], [0, 1, 0, 1] * 5)
    with open_registry(home, postgres_url) as registry:
        registry.register(model, "risk", sample_input=frame[["age", "income"]])
    stream = f"test-events-{uuid.uuid4().hex[:8]}"
    args = (
        "risk", "--workers", "1", "--log-sink", "table",
        "--log-sink", f"redis://127.0.0.1:6379/0?stream={stream}",
        "--log-exclude", "income", "--log-hash", "age",
    )  # fmt: skip
    records = {"dataframe_records": [{"age": 30, "income": 1.0}, {"age": 40, "income": 9.0}]}
    env = server_env(home, postgres_url)
    with running(env, tmp_path / "logs", *args) as server:
        answers = [httpx.post(f"{server.url}/invocations", json=records) for _ in range(3)]
        assert [a.status_code for a in answers] == [200] * 3
        ids = [a.headers["x-request-id"] for a in answers]
    client = redis.Redis()
    try:
        entries: list[tuple[bytes, dict[bytes, bytes]]] = client.xrange(stream)  # type: ignore[assignment]
    finally:
        client.delete(stream)
        client.close()
    logged = [json.loads(fields[b"event"]) for _, fields in entries]
    assert sorted(e["id"] for e in logged) == sorted(ids)  # CloudEvents: id = request id
    key = load_or_create_key(home)
    with Database(postgres_url) as database, database.read() as session:
        rows = session.scalars(select(PredictionEventRow)).all()
        _check_rows(rows, ids, key, model)


def _check_rows(
    rows: Sequence[PredictionEventRow], ids: list[str], key: bytes, model: LogisticRegression
) -> None:
    assert sorted(r.request_id for r in rows) == sorted(ids)
    for row in rows:
        assert (row.model, row.version, row.deployment) == ("risk", 1, None)
        assert "input.income" not in json.dumps(row.inputs) and "income" not in row.inputs
        assert row.inputs["age"] == [digest(key, 30), digest(key, 40)]
        assert (
            row.outputs["predict"]
            == model.predict(pd.DataFrame({"age": [30, 40], "income": [1.0, 9.0]})).tolist()
        )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--log-sink", "kafka://broker/topic"], "unknown prediction log sink 'kafka://"),
        (["--log-sink", "parquet", "--log-sink", "parquet"], "named twice"),
        (["--log-sample-rate", "0"], "log_sample_rate"),
    ],
)
def test_bad_prediction_log_settings_are_refused(
    tmp_path: Path, args: list[str], message: str
) -> None:
    env = {
        "SHIPYARD_HOME": str(tmp_path / "home"),
        "SHIPYARD_DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite'}",
    }
    result = CliRunner().invoke(cli, ["serve", "risk", *args], env=env)
    assert result.exit_code == 3, result.output
    assert message in result.stderr
    assert not (tmp_path / "home" / "events").exists()  # nothing started, nothing written


def test_a_bundle_server_refuses_the_table_sink(tmp_path: Path) -> None:
    """A --bundle server has no registry database for the `table` sink to write to."""
    env = {"SHIPYARD_HOME": str(tmp_path / "home")}
    args = ["serve", "--bundle", str(tmp_path / "fraud.tar.gz"), "--log-sink", "table"]
    result = CliRunner().invoke(cli, args, env=env)
    assert result.exit_code == 3, result.output
    assert "the 'table' prediction log sink writes to a registry database" in result.stderr
    assert not (tmp_path / "home").exists()  # refused before anything was created


def test_no_log_predictions_writes_nothing(tmp_path: Path) -> None:
    home, url = tmp_path / "home", f"sqlite:///{tmp_path / 'db.sqlite'}"
    x = np.arange(8, dtype=np.float64).reshape(4, 2)
    with open_registry(home, url) as registry:
        registry.register(LogisticRegression().fit(x, [0, 1, 0, 1]), "plain", sample_input=x)
    env = server_env(home, url)
    with running(env, tmp_path / "logs", "plain", "--workers", "1", "--no-log-predictions") as s:
        answer = httpx.post(f"{s.url}/invocations", json={"inputs": x.tolist()})
        assert answer.status_code == 200
    assert not (home / "events").exists()
