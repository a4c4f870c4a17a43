"""`shipyard serve --deployments` end to end, on SQLite and PostgreSQL: deployments served by
name over OIP (JSON, binary, gRPC), KServe v1 and MLflow; canary split, sticky keys, header
matches, shadow copies, live revision pickup, the version header and the prediction log.

Splits are checked within a binomial 3-sigma tolerance; waits are liveness bounds, never
timings.
"""

from __future__ import annotations

import math
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton
from backends import SQLITE_ONLY
from serve_support import SlowModel, open_registry, running, server_env
from sklearn.linear_model import LinearRegression
from sqlalchemy import select

from shipyard.client import Registry
from shipyard.monitoring.eventlog import read_events
from shipyard.rollouts.deployments import Deployments
from shipyard.rollouts.spec import HeaderMatch, RevisionSpec, Strategy, Variant
from shipyard.storage.deployments_table import PredictionRow, RouteStatsRow

pytestmark = pytest.mark.slow
LIVENESS = 20.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _register(registry: Registry) -> None:
    """scorer:N predicts N * x0, so every answer names the version that gave it."""
    for version in (1, 2, 3):
        rows = np.random.default_rng(version).normal(size=(50, 2)).astype(np.float32)
        registry.register(
            LinearRegression().fit(rows, rows[:, 0] * version), "scorer", sample_input=rows[:10]
        )


def _body(x0: float, request_id: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [x0, 0.0]}]
    }
    if request_id is not None:
        body["id"] = request_id
    return body


def _input_name(http: httpx.Client) -> str:
    return str(http.get("/v2/models/api").json()["inputs"][0]["name"])


class Caller:
    def __init__(self, http: httpx.Client) -> None:
        self.http = http
        self.name = _input_name(http)

    def infer(self, x0: float = 1.0, headers: dict[str, str] | None = None) -> httpx.Response:
        body = _body(x0)
        body["inputs"][0]["name"] = self.name
        reply = self.http.post("/v2/models/api/infer", json=body, headers=headers)
        assert reply.status_code == 200, reply.text
        return reply

    def version(self, **headers: str) -> str:
        return str(self.infer(headers=headers).headers["x-shipyard-model-version"])


def _eventually(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + LIVENESS
    while not check():
        assert time.monotonic() < deadline, f"not within {LIVENESS}s: {what}"
        time.sleep(0.1)


def _within_3_sigma(hits: int, total: int, p: float) -> bool:
    return abs(hits - total * p) <= 3 * math.sqrt(total * p * (1 - p))


def test_deployments_are_served_routed_and_followed(tmp_path: Path, database_url: str) -> None:
    home = tmp_path / "home"
    with open_registry(home, database_url) as registry:
        _register(registry)
        _serve_and_check(registry, home, tmp_path, database_url)


def _serve_and_check(registry: Registry, home: Path, tmp_path: Path, database_url: str) -> None:
    store = registry.store
    deployments = Deployments(store)
    deployments.deploy("api", "scorer:1")
    grpc_port = _free_port()
    env = server_env(home, database_url)
    args = ("--deployments", "--workers", "1", "--default-model", "api")
    with (
        running(env, tmp_path / "logs", *args, grpc_port=grpc_port) as server,
        httpx.Client(base_url=server.url, timeout=10) as http,
    ):
        caller = Caller(http)
        # OIP JSON: the version that answered, in the body and the header; a prediction id.
        reply = caller.infer(2.0)
        body = reply.json()
        assert (body["model_name"], body["model_version"]) == ("api", "scorer:1")
        assert reply.headers["x-shipyard-model-version"] == "scorer:1"
        # One id per request: the access log's, the response's and the logged prediction's.
        assert reply.headers["x-request-id"] == body["id"] and body["id"]
        assert body["outputs"][0]["data"][0] == pytest.approx(2.0, abs=1e-4)
        meta = http.get("/v2/models/api").json()
        assert meta["name"] == "api" and meta["versions"] == ["scorer:1"]
        assert http.get("/v2/models/api/ready").status_code == 200
        refused = http.post("/v2/models/api/versions/1/infer", json=_body(1.0))
        assert refused.status_code == 400 and "picks the version" in refused.text

        _check_clients(server.address, grpc_port, caller.name)
        _check_unnamed_protocols(http)

        # Canary: 1,000 keyless requests split 80/20 within 3 sigma.
        deployments.deploy("api", "scorer:2", strategy="canary", weight=20)
        _eventually(lambda: caller.version() == "scorer:2", "canary picked up")
        counts = Counter(caller.version() for _ in range(1000))
        assert set(counts) == {"scorer:1", "scorer:2"}
        assert _within_3_sigma(counts["scorer:2"], 1000, 0.2), counts

        # Sticky: 200 keys x 5 calls, every key always on one variant.
        stuck = {}
        for index in range(200):
            seen = {caller.version(**{"x-shipyard-key": f"user-{index}"}) for _ in range(5)}
            assert len(seen) == 1, (index, seen)
            stuck[index] = seen.pop()
        assert _within_3_sigma(sum(v == "scorer:2" for v in stuck.values()), 200, 0.2)

        # Header match: testers reach the canary whatever the weights.
        spec = RevisionSpec(
            Strategy.CANARY,
            (Variant("scorer", 1, 99), Variant("scorer", 2, 1)),
            matches=(HeaderMatch("x-tester", "yes", 1),),
        )
        revision = deployments.revise("api", spec, action="deployment.revised")
        _eventually(
            lambda: (
                caller.version(**{"x-tester": "yes", "x-shipyard-key": "user-0"}) == "scorer:2"
                and _stats_revision(store, revision.number)
            ),
            "header match picked up",
        )
        for index in range(30):
            assert caller.version(**{"x-tester": "yes", "x-shipyard-key": f"k{index}"}) == (
                "scorer:2"
            )

        _check_shadow(deployments, caller, store)
        _check_predictions(caller, store)

        # A direct deploy: every answer from the new version, picked up without a restart.
        deployments.deploy("api", "scorer:3")
        _eventually(lambda: all(caller.version() == "scorer:3" for _ in range(20)), "v3 live")
    _check_prediction_log(home, body["id"], caller.name)


def _check_prediction_log(home: Path, first_id: str, input_name: str) -> None:
    """After the server stopped (its log flushed): the Parquet log holds each answered
    request under its id, with the deployment, the version, the inputs and the outputs."""
    events = read_events(home, model="scorer", explode=False)
    assert set(events["deployment"]) == {"api"}
    assert set(events["version"]) == {1, 2, 3}
    first = events[events["request_id"] == first_id]
    assert len(first) == 1, f"{first_id} logged {len(first)} times"
    row = first.iloc[0]
    assert row["version"] == 1 and list(row[f"input.{input_name}_0"]) == [2.0]
    assert list(row["output.predict"]) == pytest.approx([2.0], abs=1e-4)
    assert len(events) > 2000  # the canary and sticky checks alone sent 2,000 requests


def _stats_revision(store: Any, number: int) -> bool:
    with store.database.read() as session:
        rows = session.scalars(select(RouteStatsRow.revision)).all()
    return number in rows


def _check_clients(address: str, grpc_port: int, input_name: str) -> None:
    x = np.array([[3.0, 0.0]], dtype=np.float32)
    client = triton.InferenceServerClient(url=address)
    assert client.is_model_ready("api")
    for binary in (False, True):
        tensor = triton.InferInput(input_name, [1, 2], "FP32")
        tensor.set_data_from_numpy(x, binary_data=binary)
        result = client.infer("api", [tensor])
        response = result.get_response()
        assert response["model_version"] == "scorer:1"
        assert result.as_numpy(response["outputs"][0]["name"])[0] == pytest.approx(3, abs=1e-4)
    rpc = triton_grpc.InferenceServerClient(url=f"127.0.0.1:{grpc_port}")
    assert rpc.is_model_ready("api")
    tensor = triton_grpc.InferInput(input_name, [1, 2], "FP32")
    tensor.set_data_from_numpy(x)
    answer = rpc.infer("api", [tensor], headers={"x-shipyard-key": "user-1"})
    assert answer.get_response().model_version == "scorer:1"
    assert answer.get_response().id  # the prediction id, for feedback
    rpc.close()


def _check_unnamed_protocols(http: httpx.Client) -> None:
    mlflow = http.post("/invocations", json={"inputs": [[4.0, 0.0]]})
    assert mlflow.status_code == 200, mlflow.text
    assert mlflow.headers["x-shipyard-model-version"] == "scorer:1"
    assert mlflow.json()["predictions"][0] == pytest.approx(4.0, abs=1e-4)
    kserve = http.post("/v1/models/api:predict", json={"instances": [[5.0, 0.0]]})
    assert kserve.status_code == 200, kserve.text
    assert kserve.headers["x-shipyard-model-version"] == "scorer:1"
    assert kserve.json()["predictions"][0] == pytest.approx(5.0, abs=1e-4)


def _check_shadow(deployments: Deployments, caller: Caller, store: Any) -> None:
    """A shadow copy never changes the response: the same bytes with and without it."""
    direct = deployments.deploy("api", "scorer:1")
    _eventually(  # one worker: once a request was routed by the revision, all are
        lambda: caller.version() == "scorer:1" and _stats_revision(store, direct.number),
        "direct v1",
    )

    def answers() -> list[bytes]:
        replies = []
        for index in range(20):
            body = _body(float(index), request_id=f"shadow-{index}")
            body["inputs"][0]["name"] = caller.name
            reply = caller.http.post("/v2/models/api/infer", json=body)
            assert reply.status_code == 200
            replies.append(reply.content)
        return replies

    before = answers()
    revision = deployments.deploy("api", "scorer:3", strategy="shadow")
    _eventually(
        lambda: caller.version() == "scorer:1" and _stats_revision(store, revision.number),
        "shadow revision serving",
    )
    assert answers() == before

    def shadow_total() -> int:
        with store.database.read() as session:
            rows = session.scalars(
                select(RouteStatsRow).where(
                    RouteStatsRow.revision == revision.number, RouteStatsRow.role == "shadow"
                )
            ).all()
            return sum(r.shadow_total for r in rows if (r.model, r.version) == ("scorer", 3))

    _eventually(lambda: shadow_total() >= 20, "shadow copies compared and recorded")


def _check_predictions(caller: Caller, store: Any) -> None:
    reply = caller.infer(7.0)
    request_id = reply.json()["id"]

    def logged() -> PredictionRow | None:
        with store.database.read() as session:
            row: PredictionRow | None = session.get(PredictionRow, request_id)
            session.expunge_all()  # readable after the session ends
            return row

    _eventually(lambda: logged() is not None, "prediction logged")
    row = logged()
    assert row is not None and row.deployment == "api" and row.model == "scorer"
    assert row.output == pytest.approx(7.0, abs=1e-4)


def _serve(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "shipyard", "serve", *args, "--http-port", "0"]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)


@SQLITE_ONLY
def test_bad_deployment_options_are_refused_before_serving(
    tmp_path: Path, database_url: str
) -> None:
    home = tmp_path / "home"
    with open_registry(home, database_url) as registry:
        _register(registry)
        Deployments(registry.store).deploy("api", "scorer:1")
        Deployments(registry.store).deploy("scorer", "scorer:2")  # a model's name too
        before = Deployments(registry.store).snapshot()
    env = server_env(home, database_url)
    missing = _serve(env, "--deployment", "nope")
    assert missing.returncode == 4 and "deployment 'nope' not found" in missing.stderr
    nothing = _serve(env)
    assert nothing.returncode == 3 and "--deployments" in nothing.stderr
    clash = _serve(env, "scorer", "--deployment", "scorer")
    assert clash.returncode == 3 and "both as a model and as a deployment" in clash.stderr
    bad = _serve(env, "--deployment", "../x")
    assert bad.returncode == 3 and "../x" in bad.stderr
    default = _serve(env, "--deployment", "api", "--default-model", "other")
    assert default.returncode == 3 and "not one of the served" in default.stderr
    with open_registry(home, database_url) as registry:
        assert Deployments(registry.store).snapshot() == before


def test_revisions_change_under_steady_load_without_a_failed_request(
    tmp_path: Path, database_url: str
) -> None:
    home = tmp_path / "home"
    with open_registry(home, database_url) as registry:
        _register(registry)
        deployments = Deployments(registry.store)
        deployments.deploy("api", "scorer:1")
        changes: list[tuple[Callable[[], object], set[str]]] = [
            (
                lambda: deployments.deploy("api", "scorer:2", strategy="canary", weight=50),
                {"scorer:1", "scorer:2"},
            ),
            (lambda: deployments.deploy("api", "scorer:3", strategy="bluegreen"), {"scorer:3"}),
            (lambda: deployments.rollback("api"), {"scorer:1", "scorer:2"}),
            (lambda: deployments.deploy("api", "scorer:2"), {"scorer:2"}),
            (lambda: deployments.deploy("api", "scorer:3", strategy="shadow"), {"scorer:2"}),
            (
                lambda: deployments.deploy("api", "scorer:1", strategy="ab"),
                {"scorer:1", "scorer:2"},
            ),
            (lambda: deployments.deploy("api", "scorer:1"), {"scorer:1"}),
            (lambda: deployments.rollback("api", to=3), {"scorer:3"}),
            (
                lambda: deployments.deploy("api", "scorer:2", strategy="canary", weight=30),
                {"scorer:3", "scorer:2"},
            ),
            (lambda: deployments.deploy("api", "scorer:1"), {"scorer:1"}),
        ]
        env = server_env(home, database_url)
        with running(env, tmp_path / "logs", "--deployments", "--workers", "2") as server:
            failures, answered = _under_load(server.url, changes)
        assert failures == [] and answered > 0


def _under_load(
    url: str, changes: list[tuple[Callable[[], object], set[str]]]
) -> tuple[list[str], int]:
    """Steady load from a thread while the revisions change; returns its failures."""
    import threading

    failures: list[str] = []
    answered = 0
    stop = threading.Event()

    def load() -> None:
        nonlocal answered
        with httpx.Client(base_url=url, timeout=10) as http:
            caller = Caller(http)
            index = 0
            while not stop.is_set() and answered < 20_000:  # bounded
                body = _body(1.0)
                body["inputs"][0]["name"] = caller.name
                try:
                    reply = http.post(
                        "/v2/models/api/infer",
                        json=body,
                        headers={"x-shipyard-key": f"load-{index % 500}"},
                    )
                    if reply.status_code != 200:
                        failures.append(f"{reply.status_code} {reply.text[:200]}")
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))
                answered += 1
                index += 1

    thread = threading.Thread(target=load, daemon=True)
    thread.start()
    try:
        with httpx.Client(base_url=url, timeout=10) as http:
            caller = Caller(http)
            for change, expected in changes:
                change()

                def observed(want: set[str] = expected) -> bool:
                    keys = (f"probe-{i}" for i in range(100))
                    return {caller.version(**{"x-shipyard-key": k}) for k in keys} == want

                _eventually(observed, f"split {expected} observed")
    finally:
        stop.set()
        thread.join(30)
    return failures, answered


@SQLITE_ONLY
def test_a_slow_shadow_never_changes_the_answers(tmp_path: Path, database_url: str) -> None:
    home = tmp_path / "home"
    with open_registry(home, database_url) as registry:
        _register(registry)
        registry.register(SlowModel(), "slow", sample_input=np.zeros((2, 2), dtype=np.float32))
        deployments = Deployments(registry.store)
        deployments.deploy("api", "scorer:1")
        env = server_env(home, database_url, SLOW_MODEL_SECONDS="0.5")
        args = ("--deployments", "--workers", "1", "--batch-threads", "2")
        with (
            running(env, tmp_path / "logs", *args) as server,
            httpx.Client(base_url=server.url, timeout=10) as http,
        ):
            caller = Caller(http)

            def answers() -> list[bytes]:
                replies = []
                for index in range(40):
                    body = _body(float(index), request_id=f"slow-{index}")
                    body["inputs"][0]["name"] = caller.name
                    reply = http.post("/v2/models/api/infer", json=body)
                    assert reply.status_code == 200, reply.text
                    replies.append(reply.content)
                return replies

            before = answers()
            revision = deployments.deploy("api", "slow:1", strategy="shadow")
            _eventually(
                lambda: (
                    caller.version() == "scorer:1"
                    and _stats_revision(registry.store, revision.number)
                ),
                "shadow revision serving",
            )
            assert answers() == before

            def shadowed() -> int:
                with registry.store.database.read() as session:
                    rows = session.scalars(
                        select(RouteStatsRow).where(RouteStatsRow.model == "slow")
                    ).all()
                    return sum(r.shadow_total for r in rows)

            _eventually(lambda: shadowed() > 0, "slow shadow copies compared")
