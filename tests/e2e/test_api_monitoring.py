"""Monitoring endpoints of a real `shipyard server`: a deployment's traffic over time from the
route statistics, the alert history (open and all), and the drift of a version's logged
predictions (Parquet log under SHIPYARD_HOME) against the reference data registered with it.
Bad periods, unknown names and missing data are refused with a message naming the problem;
a key without the read scope gets 403."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from serve_support import open_registry
from sklearn.linear_model import LogisticRegression
from test_server import ControlPlane, control_plane, module_database, ok

from shipyard.core.events import PredictionEvent
from shipyard.monitoring.alert_history import AlertHistory
from shipyard.monitoring.alerts import FIRING, RESOLVED, Alert
from shipyard.monitoring.eventlog import ParquetSink
from shipyard.rollouts.deployments import Deployments
from shipyard.rollouts.stats import LATENCY_EDGES_S, bucket_of, empty_latency
from shipyard.storage.database import Database
from shipyard.storage.deployments_table import RouteStatsRow

pytestmark = pytest.mark.slow


@dataclass
class Api:
    server: ControlPlane
    read: str
    predict: str

    def client(self, token: str | None = None) -> httpx.Client:
        return self.server.client(token or self.read)


def _reference(rng: np.random.Generator, n: int) -> pd.DataFrame:
    return pd.DataFrame(
        {"amount": rng.normal(40, 5, n), "age": rng.normal(35, 8, n),
         "region": rng.choice(["eu", "us", "apac"], n), "label": rng.integers(0, 2, n)}
    )  # fmt: skip


def _events(
    rng: np.random.Generator, version: int, at: datetime, n: int, amount: float
) -> list[PredictionEvent]:
    """`n` one-row requests of scorer:`version`; `amount` is the mean of the amount feature."""
    return [
        PredictionEvent(
            request_id=f"{version}-{at.timestamp()}-{i}",
            model="scorer",
            version=version,
            at=at + timedelta(seconds=i),
            latency_ms=1.0,
            deployment="web",
            inputs={
                "amount": [float(rng.normal(amount, 5))],
                "age": [float(rng.normal(35, 8))],
                "region": [str(rng.choice(["eu", "us", "apac"]))],
            },
            outputs={"proba": [float(rng.uniform())]},
        )  # fmt: skip
        for i in range(n)
    ]


def _stats(version: int, at: datetime, requests: int, errors: int, role: str) -> RouteStatsRow:
    latency = empty_latency()
    latency[bucket_of(0.003)] = requests
    return RouteStatsRow(
        deployment="web", revision=1, model="scorer", version=version, role=role, plane="t",
        at=at, requests=requests, errors=errors, latency=latency, predictions=[],
        shadow_total=0, shadow_agree=0,
    )  # fmt: skip


def _seed(home: Path, url: str) -> None:
    """scorer:1 and :3 with reference data, :2 without; deployment `web` with recorded traffic;
    logged predictions of :1 (recent ones with `amount` shifted, older ones not) and :2;
    alerts about scorer, web and another model."""
    rng = np.random.default_rng(7)
    X = rng.normal(size=(50, 2)).astype(np.float32)
    model = LogisticRegression().fit(X, (X[:, 0] > 0).astype(int))
    with open_registry(home, url) as registry:
        registry.register(model, "scorer", sample_input=X[:5], reference_data=_reference(rng, 2000))
        registry.register(model, "scorer", sample_input=X[:5])
        registry.register(model, "scorer", sample_input=X[:5], reference_data=_reference(rng, 500))
        Deployments(registry.store).deploy("web", "scorer:1")
    now = datetime.now(UTC)
    sink = ParquetSink(home)
    sink.write(_events(rng, 1, now - timedelta(minutes=20), 600, amount=60.0))
    sink.write(_events(rng, 1, now - timedelta(hours=3), 300, amount=40.0))
    sink.write(_events(rng, 2, now - timedelta(minutes=5), 50, amount=40.0))
    sink.close()
    with Database(url) as database:
        with database.write() as session:
            session.add(_stats(1, now - timedelta(minutes=5), 100, 5, "primary"))
            session.add(_stats(1, now - timedelta(minutes=30), 100, 0, "primary"))
            session.add(_stats(2, now - timedelta(minutes=5), 40, 0, "shadow"))
            session.add(_stats(1, now - timedelta(hours=2), 100, 50, "primary"))
        history = AlertHistory(database)
        for minutes, rule, subject, state in (
            (120, "drift", "scorer", FIRING), (60, "drift", "scorer", RESOLVED),
            (10, "drift", "scorer", FIRING), (30, "accuracy", "scorer", FIRING),
            (50, "errors", "web", FIRING), (40, "errors", "web", RESOLVED),
            (20, "drift", "other", FIRING),
        ):  # fmt: skip
            at = now - timedelta(minutes=minutes)
            history.record(
                Alert(rule, subject, state, "warning", f"{rule} {state}", at, {"p": 0.01})
            )


@pytest.fixture(
    scope="module",
    params=["sqlite"],  # backends.py: the API's storage runs on both in other tests
)
def api(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    root = tmp_path_factory.mktemp("api-monitoring")
    with module_database(request.param, root) as url:
        _seed(root / "home", url)
        with control_plane(root / "home", url, root / "logs", "--no-controller") as server:
            assert server.admin_token is not None
            with server.client(server.admin_token) as admin:
                tokens = {
                    scope: ok(admin.post("/keys", json={"name": scope, "scopes": [scope]}), 201)["token"]
                    for scope in ("read", "predict")
                }  # fmt: skip
            yield Api(server, tokens["read"], tokens["predict"])


def _refused(http: httpx.Client, path: str, status: int, text: str) -> None:
    r = http.get(path)
    assert r.status_code == status, (path, r.text)
    assert text in r.json()["error"], (path, r.json())


def _series(body: dict[str, Any], version: int, shadow: bool = False) -> dict[str, Any]:
    found: list[dict[str, Any]] = [
        s for s in body["series"] if s["version"] == version and s["shadow"] == shadow
    ]
    assert len(found) == 1, body["series"]
    return found[0]


def test_traffic_per_version_over_time(api: Api) -> None:
    with api.client() as http:
        body = ok(http.get("/deployments/web/traffic", params={"since": "1h", "step": 60}))
        assert body["step_s"] == 60 and 60 <= len(body["buckets"]) <= 62
        starts = [datetime.fromisoformat(b) for b in body["buckets"]]
        assert all(s.timestamp() % 60 == 0 for s in starts)  # aligned to the minute
        live = _series(body, 1)
        assert live["ref"] == "scorer:1" and len(live["requests"]) == len(starts)
        # The row of two hours ago is outside the hour; the other two are in.
        assert sum(live["requests"]) == 200 and sum(live["errors"]) == 5
        busy = [i for i, n in enumerate(live["requests"]) if n]
        assert len(busy) == 2
        assert sorted(live["error_rate"][i] for i in busy) == [0.0, 0.05]
        assert all(live["error_rate"][i] is None for i in range(len(starts)) if i not in busy)
        p99 = live["latency_p99_s"][busy[0]]
        assert p99 == pytest.approx(LATENCY_EDGES_S[bucket_of(0.003)]) and p99 >= 0.003
        assert live["latency_p50_s"][busy[0]] == p99  # one latency bucket holds every request
        assert sum(_series(body, 2, shadow=True)["requests"]) == 40
        wider = ok(http.get("/deployments/web/traffic", params={"since": "3h", "step": 600}))
        assert sum(_series(wider, 1)["errors"]) == 55 and len(wider["buckets"]) in (19, 20)


def test_traffic_bad_input_is_refused(api: Api) -> None:
    with api.client() as http:
        _refused(http, "/deployments/nope/traffic", 404, "deployment 'nope' not found")
        _refused(http, "/deployments/web/traffic?since=abc", 400, "since: cannot read 'abc'")
        _refused(
            http, "/deployments/web/traffic?since=0h", 400, "since: the period must be positive"
        )
        _refused(
            http, "/deployments/web/traffic?since=60d&step=3600", 400, "longer than the 31 days"
        )
        _refused(http, "/deployments/web/traffic?since=30d&step=60", 400, "more than 1440")
        _refused(http, "/deployments/web/traffic?step=0", 422, "field 'step'")
        _refused(http, "/deployments/web/traffic?step=x", 422, "field 'step'")


def test_alerts_open_and_all(api: Api) -> None:
    with api.client() as http:
        open_ = ok(http.get("/alerts", params={"state": "open", "subject": "scorer"}))
        assert [(a["rule"], a["state"]) for a in open_] == [
            ("drift", "firing"),
            ("accuracy", "firing"),
        ]
        assert open_[0]["details"] == {"p": 0.01} and open_[0]["message"] == "drift firing"
        every = ok(http.get("/alerts", params={"subject": "scorer"}))
        assert [a["rule"] for a in every] == ["drift", "accuracy", "drift", "drift"]
        both = ok(
            http.get("/alerts", params=[("subject", "scorer"), ("subject", "web"), ("limit", 3)])
        )
        assert [(a["subject"], a["rule"]) for a in both] == [
            ("scorer", "drift"), ("scorer", "accuracy"), ("web", "errors")]  # fmt: skip
        everywhere = ok(http.get("/alerts", params={"state": "open"}))
        assert {(a["subject"], a["rule"]) for a in everywhere} == {
            ("scorer", "drift"), ("scorer", "accuracy"), ("other", "drift")}  # fmt: skip
        assert ok(http.get("/alerts", params={"subject": "quiet"})) == []
        _refused(http, "/alerts?state=closed", 422, "field 'state'")
        _refused(http, "/alerts?limit=0", 422, "field 'limit'")
        _refused(http, "/alerts?subject=" + "x" * 201, 400, "subject is 201 characters long")
        _refused(http, "/alerts?subject=a%00b", 400, "subject must not contain NUL bytes")


def test_drift_of_logged_predictions_against_the_reference(api: Api) -> None:
    with api.client() as http:
        body = ok(http.get("/models/scorer/drift", params={"version": 1, "since": "1h"}))
        assert (body["ref"], body["n_live"], body["n_reference"]) == ("scorer:1", 600, 2000)
        assert body["drift"] is True and body["not_logged"] == ["label"]
        features = {f["name"]: f for f in body["features"]}
        assert list(features) == ["amount", "age", "region"]
        amount = features["amount"]
        assert amount["drifted"] is True and amount["p_adjusted"] < 1e-6
        assert "median" in amount["summary"] and amount["kind"] == "numeric"
        assert not features["age"]["drifted"] and not features["region"]["drifted"]
        histogram = amount["histogram"]
        assert len(histogram["edges"]) == len(histogram["reference"]) + 1 == 21
        assert sum(histogram["reference"]) == 2000 and sum(histogram["live"]) == 600
        # The live mass sits to the right of the reference's.
        centre = np.convolve(histogram["edges"], [0.5, 0.5], "valid")
        assert (
            np.average(centre, weights=histogram["live"])
            > np.average(centre, weights=histogram["reference"]) + 10
        )
        region = features["region"]["histogram"]
        assert sorted(region["categories"]) == ["apac", "eu", "us"] and region["edges"] == []
        # A day reaches the older, unshifted predictions too.
        day = ok(http.get("/models/scorer/drift", params={"version": 1}))
        assert day["n_live"] == 900 and day["since"] < body["since"]
        deployed = ok(http.get("/models/scorer/drift?version=1&since=1h&deployment=web"))
        assert deployed["n_live"] == 600 and deployed["deployment"] == "web"


def test_drift_refusals_name_the_problem(api: Api) -> None:
    with api.client() as http:
        _refused(
            http, "/models/scorer/drift?version=2", 412, "no reference data registered for scorer:2"
        )
        _refused(
            http,
            "/models/scorer/drift?version=3",
            412,
            "no logged predictions of scorer:3 in the last 24h",
        )
        _refused(http, "/models/scorer/drift?version=1&since=1h&deployment=other", 412,
                 "no logged predictions of scorer:1 through other in the last 1h")  # fmt: skip
        # No version: the latest (3), which has served nothing.
        _refused(http, "/models/scorer/drift", 412, "scorer:3")
        _refused(http, "/models/nope/drift", 404, "nope")
        _refused(http, "/models/scorer/drift?version=9", 404, "9")
        _refused(
            http, "/models/scorer/drift?version=1&since=soon", 400, "since: cannot read 'soon'"
        )
        _refused(http, "/models/scorer/drift?version=0", 422, "field 'version'")
        _refused(
            http, "/models/scorer/drift?version=1&deployment=a/b", 400, "deployment name 'a/b'"
        )


@pytest.mark.parametrize(
    "path", ["/deployments/web/traffic", "/alerts", "/models/scorer/drift?version=1"]
)
def test_monitoring_needs_the_read_scope(api: Api, path: str) -> None:
    with api.client(api.predict) as http:
        _refused(http, path, 403, "read")
    with httpx.Client(base_url=api.server.url + "/api/v1") as anonymous:
        assert anonymous.get(path).status_code == 401
