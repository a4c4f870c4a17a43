"""`shipyard serve` end to end with real clients: tritonclient (JSON and binary), KServe v1,
MLflow formats, gzip, metrics and request ids — on SQLite and PostgreSQL."""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import httpx
import numpy as np
import orjson
import pandas as pd
import pytest
import tritonclient.http as triton
from backends import SQLITE_ONLY
from serve_support import open_registry, requests_counted, running, server_env
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

pytestmark = pytest.mark.slow
COLUMNS = ["a", "b", "c", "d"]


def _register(home: Path, database_url: str) -> dict[str, np.ndarray]:
    X, y = make_classification(400, 20, n_informative=8, random_state=0)
    X = X.astype(np.float32)
    frame = pd.DataFrame(X[:, :4].astype(np.float64), columns=COLUMNS)
    with open_registry(home, database_url) as registry:
        forest = RandomForestClassifier(20, max_depth=8, random_state=0).fit(X, y)
        registry.register(forest, "forest", sample_input=X[:50])
        registry.register(LogisticRegression().fit(frame, y), "table", sample_input=frame[:50])
        return {
            "X": X[:8],
            "frame": frame[:8].to_numpy(),
            "forest": np.asarray(registry.load("forest").predict(X[:8])),
            "forest_proba": np.asarray(registry.load("forest").predict_proba(X[:8])),
            "table": np.asarray(registry.load("table").predict(frame[:8])),
        }


@SQLITE_ONLY
def test_protocols_end_to_end(tmp_path: Path, database_url: str) -> None:
    home = tmp_path / "home"
    data = _register(home, database_url)
    env = server_env(home, database_url)
    args = ("forest", "table", "--workers", "1", "--default-model", "table")
    with running(env, tmp_path / "logs", *args) as server:
        _check_triton(server.address, data)
        with httpx.Client(base_url=server.url, timeout=10) as http:
            _check_kserve_v1(http, data)
            _check_mlflow(http, data)
            _check_gzip_and_request_id(http, data)
            _check_metrics(http)
    assert '"request_id"' in server.logs()  # the JSON access log


def _check_triton(address: str, data: dict[str, np.ndarray]) -> None:
    client = triton.InferenceServerClient(url=address)
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("forest") and not _ready(client, "missing")
    assert client.get_server_metadata()["name"]
    meta = client.get_model_metadata("forest")
    assert meta["name"] == "forest" and meta["versions"]
    spec = meta["inputs"][0]
    for binary in (False, True):
        tensor = triton.InferInput(spec["name"], list(data["X"].shape), "FP32")
        tensor.set_data_from_numpy(data["X"], binary_data=binary)
        outputs = [
            triton.InferRequestedOutput("predict", binary_data=binary),
            triton.InferRequestedOutput("predict_proba", binary_data=binary),
        ]
        result = client.infer("forest", [tensor], outputs=outputs)
        np.testing.assert_array_equal(result.as_numpy("predict"), data["forest"])
        np.testing.assert_allclose(
            result.as_numpy("predict_proba"), data["forest_proba"], atol=1e-5
        )
    tensor = triton.InferInput(spec["name"], list(data["X"].shape), "FP32")
    tensor.set_data_from_numpy(data["X"], binary_data=True)
    result = client.infer(
        "forest",
        [tensor],
        request_compression_algorithm="gzip",
        response_compression_algorithm="gzip",
    )
    np.testing.assert_array_equal(result.as_numpy("predict"), data["forest"])
    client.close()


def _ready(client: triton.InferenceServerClient, name: str) -> bool:
    try:
        return bool(client.is_model_ready(name))
    except Exception:
        return False


def _check_kserve_v1(http: httpx.Client, data: dict[str, np.ndarray]) -> None:
    assert http.get("/v1/models/forest").json() == {"name": "forest", "ready": True}
    r = http.post("/v1/models/forest:predict", json={"instances": data["X"].tolist()})
    assert r.status_code == 200, r.text
    assert r.json()["predictions"] == data["forest"].tolist()
    records = [dict(zip(COLUMNS, row, strict=True)) for row in data["frame"].tolist()]
    r = http.post("/v1/models/table:predict", json={"instances": records})
    assert r.json()["predictions"] == data["table"].tolist(), r.text


def _check_mlflow(http: httpx.Client, data: dict[str, np.ndarray]) -> None:
    rows = data["frame"].tolist()
    records = [dict(zip(COLUMNS, row, strict=True)) for row in rows]
    bodies = [
        {"dataframe_split": {"columns": COLUMNS, "data": rows}},
        {"dataframe_records": records},
        {"instances": records},
        {"inputs": {c: [r[i] for r in rows] for i, c in enumerate(COLUMNS)}},
    ]
    for body in bodies:
        r = http.post("/invocations", json=body)
        assert r.status_code == 200, (body, r.text)
        assert r.json()["predictions"] == data["table"].tolist(), body
        assert r.headers["x-shipyard-model-version"] == "1"
    csv = io.StringIO()
    pd.DataFrame(rows, columns=COLUMNS).to_csv(csv, index=False)
    r = http.post("/invocations", content=csv.getvalue(), headers={"content-type": "text/csv"})
    assert r.json()["predictions"] == data["table"].tolist(), r.text
    assert http.get("/ping").status_code == 200 and http.get("/health").status_code == 200
    assert http.get("/version").text


def _check_gzip_and_request_id(http: httpx.Client, data: dict[str, np.ndarray]) -> None:
    doc = {"inputs": [_tensor(data["X"])]}
    r = http.post(
        "/v2/models/forest/infer",
        content=gzip.compress(orjson.dumps(doc)),
        headers={"content-encoding": "gzip", "x-request-id": "trace-42"},
    )
    assert r.status_code == 200, r.text
    assert r.headers["x-request-id"] == "trace-42"
    assert r.headers["x-shipyard-model-version"] == "1"
    outputs = {o["name"]: o["data"] for o in r.json()["outputs"]}
    assert outputs["predict"] == data["forest"].tolist()
    assert http.get("/v2/health/live").headers["x-request-id"]  # generated when not given


def _check_metrics(http: httpx.Client) -> None:
    text = http.get("/metrics").text
    assert requests_counted(text, model="forest", protocol="rest-v2", status="OK") >= 4
    assert requests_counted(text, model="table", protocol="mlflow", status="OK") >= 5


def _tensor(X: np.ndarray) -> dict[str, object]:
    return {"name": "input", "datatype": "FP32", "shape": list(X.shape), "data": X.ravel().tolist()}
