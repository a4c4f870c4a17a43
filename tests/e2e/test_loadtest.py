"""`shipyard loadtest` end to end: a real server on a tiny model, real load, reports checked for
consistency (never for timings)."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from serve_support import ServerProcess, open_registry, running, server_env
from sklearn.linear_model import LogisticRegression

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    home = tmp_path_factory.mktemp("loadtest") / "home"
    database_url = f"sqlite:///{home / 'shipyard.db'}"
    X = np.random.default_rng(0).normal(size=(200, 4)).astype(np.float32)
    with open_registry(home, database_url) as registry:
        registry.register(LogisticRegression().fit(X, X[:, 0] > 0), "tiny", sample_input=X[:20])
        registry.set_alias("tiny", "production", 1)
    return server_env(home, database_url)


@pytest.fixture(scope="module")
def server(env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    logs = tmp_path_factory.mktemp("logs")
    with running(env, logs, "tiny", "--workers", "1", "--no-access-log") as process:
        yield process


def _loadtest(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "shipyard", "loadtest", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)


def _report(env: dict[str, str], *args: str) -> dict[str, Any]:
    done = _loadtest(env, *args, "--json")
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = orjson.loads(done.stdout)
    return report


def _check_consistent(report: dict[str, Any], rows: int) -> None:
    result = report["result"]
    assert result["requests"] > 0
    assert result["errors"] == {}
    assert result["ok"] == result["requests"]
    assert result["rows"] == result["ok"] * rows
    latency = result["latency_ms"]
    ordered = [latency[k] for k in ("p50", "p90", "p99", "p99.9", "max")]
    assert ordered == sorted(ordered) and ordered[0] > 0
    assert result["throughput_rps"] > 0 and not result["interrupted"]


def test_url_json_load(env: dict[str, str], server: ServerProcess) -> None:
    report = _report(env, server.url, "--duration", "2", "--concurrency", "4")
    assert report["model"] == "tiny" and report["protocol"] == "rest-json"
    assert report["ref"] is None and report["workers"] is None
    _check_consistent(report, rows=1)
    view = report["server"]  # the server batched every row this run sent
    assert view["batches"] > 0
    assert view["batches"] * view["mean_batch_rows"] == pytest.approx(report["result"]["ok"])


def test_url_binary_rows_and_request_budget(env: dict[str, str], server: ServerProcess) -> None:
    args = ("--model", "tiny", "--binary", "--rows", "8", "--max-requests", "300")
    report = _report(env, server.url, *args, "--duration", "20", "--concurrency", "4")
    assert report["protocol"] == "rest-binary"
    _check_consistent(report, rows=8)
    assert report["result"]["requests"] == 300


def test_data_file_and_table_output(
    env: dict[str, str], server: ServerProcess, tmp_path: Path
) -> None:
    data = tmp_path / "rows.npy"
    np.save(data, np.arange(40, dtype=np.float64).reshape(10, 4))
    done = _loadtest(env, server.url, "--data", str(data), "--rows", "3", "--max-requests", "50")
    assert done.returncode == 0, done.stderr
    assert "latency p99" in done.stdout and "server metrics" in done.stdout


def test_suggest_sweeps_concurrency_of_a_url(env: dict[str, str], server: ServerProcess) -> None:
    report = _report(env, server.url, "--suggest", "--duration", "2", "--slo-ms", "1000")
    assert [c["concurrency"] for c in report["cells"]] == [1, 4, 16, 64]
    for cell in report["cells"]:
        _check_consistent(cell, rows=1)
    assert report["best"] is not None and report["text"].startswith("use ")


def test_ref_starts_and_stops_its_own_server(env: dict[str, str]) -> None:
    report = _report(env, "tiny@production", "--workers", "1", "--duration", "2",
                     "--concurrency", "4")  # fmt: skip
    assert report["ref"] == "tiny@production" and report["workers"] == 1
    _check_consistent(report, rows=1)
    host_port = report["url"].removeprefix("http://").rsplit(":", 1)
    with pytest.raises(OSError), socket.create_connection((host_port[0], int(host_port[1])), 1):
        pass  # stopped at the end


def test_grpc_load_on_a_ref(env: dict[str, str]) -> None:
    args = ("--workers", "1", "--protocol", "grpc", "--max-requests", "100", "--concurrency", "2")
    report = _report(env, "tiny@production", *args)
    assert report["protocol"] == "grpc"
    _check_consistent(report, rows=1)
    assert report["result"]["requests"] == 100


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(
    ("target", "code", "words"),
    [
        pytest.param("http://127.0.0.1:{free}", 11, "cannot reach", id="nothing-listening"),
        pytest.param("http://192.0.2.1:8080", 3, "--allow-remote", id="remote-refused"),
        pytest.param("ftp://127.0.0.1", 3, "not an http:// URL", id="not-http"),
        pytest.param("missing@production", 4, "not found", id="unknown-ref"),
    ],
)
def test_bad_targets_exit_clearly(env: dict[str, str], target: str, code: int, words: str) -> None:
    done = _loadtest(env, target.format(free=_free_port()), "--duration", "1")
    assert done.returncode == code, done.stderr
    assert words in done.stderr and "Traceback" not in done.stderr
