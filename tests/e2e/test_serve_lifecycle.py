"""Lifecycle of `shipyard serve`: SIGTERM drains in-flight requests (P3), several workers give
each caller its own rows, an alias move is followed with no failed request, unsafe binds and
unknown models are refused."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from serve_support import (
    ServerProcess,
    SlowModel,
    open_registry,
    requests_counted,
    running,
    server_env,
)
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier
from typer.testing import CliRunner

from shipyard.cli import app as cli

pytestmark = pytest.mark.slow


def _sqlite(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'db.sqlite'}"


def test_sigterm_drains_32_in_flight_requests(tmp_path: Path) -> None:
    url, home = _sqlite(tmp_path), tmp_path / "home"
    slow = SlowModel()
    with open_registry(home, url) as registry:
        registry.register(slow, "slow", sample_input=np.zeros((2, 3)))
    env = server_env(home, url, SLOW_MODEL_SECONDS="1.5", SHIPYARD_SERVE_SHUTDOWN_DELAY_S="2")
    args = ("slow", "--workers", "1", "--batch-threads", "4", "--max-batch-size", "8")
    server = ServerProcess(env, tmp_path / "logs", *args).wait_ready()
    body = {"inputs": [{"name": "input", "datatype": "FP64", "shape": [1, 3], "data": [1, 2, 3]}]}
    statuses: list[int] = []

    def call() -> None:
        with httpx.Client(timeout=60) as http:
            statuses.append(http.post(f"{server.url}/v2/models/slow/infer", json=body).status_code)

    threads = [threading.Thread(target=call) for _ in range(32)]
    for thread in threads:
        thread.start()
    _wait_in_flight(server.url, 32)
    started = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    ready = httpx.get(f"{server.url}/v2/health/ready", timeout=5)
    assert ready.status_code == 503  # readiness fails first, while requests still complete
    code = server.process.wait(30)
    elapsed = time.monotonic() - started
    for thread in threads:
        thread.join(30)
    server.close()
    assert statuses == [200] * 32
    assert code == 0 and elapsed < 30


def _wait_in_flight(url: str, count: int) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        text = httpx.get(f"{url}/metrics").text
        inside = sum(
            float(line.rpartition(" ")[2])
            for line in text.splitlines()
            if line.startswith("shipyard_requests_in_flight{")
        )
        queued = inside >= 1
        if queued:
            time.sleep(0.5)  # the rest connect in the same instant
            return
        time.sleep(0.05)
    raise AssertionError(f"requests never reached the model ({count} expected)")


def _forest(seed: int) -> tuple[RandomForestClassifier, np.ndarray]:
    X, y = make_classification(600, 20, n_informative=10, random_state=seed)
    X = X.astype(np.float32)
    return RandomForestClassifier(20, max_depth=8, random_state=seed).fit(X, y), X


def test_two_workers_answer_each_row_with_its_own_prediction(tmp_path: Path) -> None:
    url, home = _sqlite(tmp_path), tmp_path / "home"
    model, X = _forest(0)
    rows = np.random.default_rng(0).normal(size=(2000, 20)).astype(np.float32)
    with open_registry(home, url) as registry:
        registry.register(model, "forest", sample_input=X[:50])
        expected = np.asarray(registry.load("forest").predict_proba(rows))
    with running(server_env(home, url), tmp_path / "logs", "forest", "--workers", "2") as server:
        got = asyncio.run(_score_rows(server.url, rows, clients=32))
        metrics = httpx.get(f"{server.url}/metrics").text
    np.testing.assert_allclose(np.stack(got), expected, atol=1e-5)
    assert requests_counted(metrics, model="forest", status="OK") >= 2000  # both workers' sum


async def _score_rows(url: str, rows: np.ndarray, clients: int) -> list[np.ndarray]:
    answers: list[np.ndarray] = [np.empty(0)] * len(rows)
    limits = httpx.Limits(max_connections=clients)

    async def client(offset: int) -> None:
        async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as http:
            for index in range(offset, len(rows), clients):
                doc = {
                    "id": str(index),
                    "inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 20],
                                "data": rows[index].tolist()}],
                    "outputs": [{"name": "predict_proba"}],
                }  # fmt: skip
                response = await http.post("/v2/models/forest/infer", json=doc)
                assert response.status_code == 200, response.text
                result = response.json()
                assert result["id"] == str(index)
                answers[index] = np.asarray(result["outputs"][0]["data"])

    await asyncio.wait_for(asyncio.gather(*(client(i) for i in range(clients))), 120)
    return answers


def test_alias_move_is_followed_without_failed_requests(tmp_path: Path) -> None:
    url, home = _sqlite(tmp_path), tmp_path / "home"
    with open_registry(home, url) as registry:
        for seed in (0, 1):
            model, X = _forest(seed)
            registry.register(model, "forest", sample_input=X[:50])
        registry.set_alias("forest", "production", 1)
    env = server_env(home, url)
    with running(env, tmp_path / "logs", "forest@production", "--workers", "2") as server:
        versions, failures = asyncio.run(_load_while_moving(server.url, home, url))
    assert failures == 0
    assert versions[0] == "1" and versions[-1] == "2"
    switch = versions.index("2")
    assert set(versions[switch:]) == {"2"} or versions[-50:] == ["2"] * 50


async def _load_while_moving(url: str, home: Path, database_url: str) -> tuple[list[str], int]:
    body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 20], "data": [0.5] * 20}]}
    versions: list[str] = []
    failures = 0
    moved_at: float | None = None
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        started = time.monotonic()
        while time.monotonic() - started < 30 and len(versions) < 20000:
            answers = await asyncio.gather(
                *(http.post("/v2/models/forest/infer", json=body) for _ in range(8))
            )
            for answer in answers:
                if answer.status_code != 200:
                    failures += 1
                else:
                    versions.append(answer.headers["x-shipyard-model-version"])
            if moved_at is None and len(versions) >= 400:
                with open_registry(home, database_url) as registry:
                    registry.set_alias("forest", "production", 2)
                moved_at = time.monotonic()
            if moved_at is not None and versions[-50:] == ["2"] * 50:
                break
    assert moved_at is not None and time.monotonic() - moved_at < 10, "alias move not followed"
    return versions, failures


def test_public_bind_needs_insecure_and_models_must_exist(tmp_path: Path) -> None:
    env = {"SHIPYARD_HOME": str(tmp_path / "home"), "SHIPYARD_DATABASE_URL": _sqlite(tmp_path)}
    result = CliRunner().invoke(cli, ["serve", "forest", "--host", "0.0.0.0"], env=env)
    assert result.exit_code == 3 and "--insecure" in result.stderr
    result = CliRunner().invoke(cli, ["serve", "nope", "--http-port", "0"], env=env)
    assert result.exit_code == 4 and "nope" in result.stderr
