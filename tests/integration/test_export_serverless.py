"""The Lambda-style handler invoked in process with real API Gateway events (REST API v1 and
HTTP API v2 payloads): exported predictions, the model loaded once per container, the cold
start measured, OIP errors passed through, and a tampered bundle refused at the first event."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier

import shipyard.app.serverless as serverless
from shipyard.app.serverless import ServerlessSettings, build_handler
from shipyard.core.errors import FailedPrecondition, InvalidArgument
from shipyard.packaging.bundle import export_bundle
from shipyard.packaging.load import load_version
from shipyard.packaging.register import Registration, register_model
from shipyard.packaging.signing import generate_keypair
from shipyard.registry.service import Registry


class LambdaContext:
    function_name = "fraud"
    aws_request_id = "c0ffee"
    memory_limit_in_mb = 512

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def rest_event(method: str, path: str, body: object = None) -> dict[str, Any]:
    """An API Gateway REST API (v1) proxy event, as the console's test template has it."""
    headers = {
        "content-type": "application/json",
        "host": "abc.execute-api.eu-west-1.amazonaws.com",
    }
    return {
        "resource": "/{proxy+}",
        "path": path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": {"proxy": path.lstrip("/")},
        "stageVariables": None,
        "requestContext": {
            "resourcePath": "/{proxy+}",
            "httpMethod": method,
            "path": f"/prod{path}",
            "stage": "prod",
            "requestId": "c0ffee",
            "identity": {"sourceIp": "203.0.113.9"},
        },
        "body": None if body is None else json.dumps(body),
        "isBase64Encoded": False,
    }


def http_api_event(method: str, path: str, body: object) -> dict[str, Any]:
    """An HTTP API (v2) / Function URL event with a base64 body."""
    raw = json.dumps(body).encode()
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {"content-type": "application/json", "host": "abc.lambda-url.aws"},
        "requestContext": {
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.9",
            },
            "requestId": "c0ffee",
            "stage": "$default",
        },
        "body": base64.b64encode(raw).decode(),
        "isBase64Encoded": True,
    }


def _infer_body(rows: np.ndarray) -> dict[str, Any]:
    return {
        "inputs": [
            {
                "name": "input",
                "shape": list(rows.shape),
                "datatype": "FP32",
                "data": rows.ravel().tolist(),
            }
        ]
    }


def _predict(response: dict[str, Any]) -> np.ndarray:
    assert response["statusCode"] == 200, response
    outputs = {o["name"]: o["data"] for o in json.loads(response["body"])["outputs"]}
    return np.asarray(outputs["predict"])


@pytest.fixture
def exported(registry: Registry, tmp_path: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(4)
    X = rng.normal(size=(200, 6)).astype(np.float32)
    forest = RandomForestClassifier(10, max_depth=5, random_state=0).fit(
        X, (X[:, 0] > 0).astype(int)
    )
    register_model(registry, forest, Registration("fraud", sample_input=X[:30]))
    bundle = export_bundle(registry, "fraud", tmp_path / "fraud.tar.gz")
    return bundle, X[:12], load_version(registry, "fraud").infer(X[:12])["predict"]


def test_api_gateway_events_get_the_exported_predictions(
    exported: tuple[Path, np.ndarray, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle, rows, expected = exported
    loads: list[str] = []

    def counting_loader(registry: Registry, ref: Any, **options: Any) -> Any:
        loads.append(str(ref))
        return load_version(registry, ref, **options)

    monkeypatch.setattr(serverless, "load_version", counting_loader)
    began = time.perf_counter()
    handle, cold = build_handler(ServerlessSettings(bundle=bundle, access_log=False))
    first = handle(rest_event("POST", "/v2/models/fraud/infer", _infer_body(rows)), LambdaContext())
    cold_start_s = time.perf_counter() - began
    np.testing.assert_array_equal(_predict(first), expected)
    assert first["headers"]["x-shipyard-model-version"] == "1"
    assert cold.import_s > 0 and 0 < cold.load_s < cold_start_s

    second = handle(
        http_api_event("POST", "/v2/models/fraud/infer", _infer_body(rows[:3])), LambdaContext()
    )
    np.testing.assert_array_equal(_predict(second), expected[:3])
    ready = handle(rest_event("GET", "/v2/health/ready"), LambdaContext())
    assert ready["statusCode"] == 200
    assert loads == ["fraud:1"]  # once per container, not per event

    bad = handle(rest_event("POST", "/v2/models/fraud/infer", {"inputs": "nope"}), LambdaContext())
    assert bad["statusCode"] == 400 and "error" in json.loads(bad["body"])
    missing = handle(
        rest_event("POST", "/v2/models/ghost/infer", _infer_body(rows)), LambdaContext()
    )
    assert missing["statusCode"] == 404
    handle.close()


def test_entry_point_reads_settings_once_and_refuses_bad_bundles(
    exported: tuple[Path, np.ndarray, np.ndarray], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle, rows, expected = exported
    monkeypatch.setattr(serverless, "_handler", None)
    monkeypatch.setenv("SHIPYARD_SERVERLESS_BUNDLE", str(bundle))
    monkeypatch.setenv("SHIPYARD_SERVERLESS_ACCESS_LOG", "false")
    event = rest_event("POST", "/v2/models/fraud/infer", _infer_body(rows))
    np.testing.assert_array_equal(_predict(serverless.handler(event, LambdaContext())), expected)
    built = serverless._handler
    serverless.handler(event, LambdaContext())
    assert serverless._handler is built
    assert built is not None
    built.close()

    private, public = tmp_path / "k.pem", tmp_path / "k.pub"
    generate_keypair(private, public)
    with pytest.raises(FailedPrecondition, match="is not signed"):
        build_handler(ServerlessSettings(bundle=bundle, public_key=public))
    with pytest.raises(InvalidArgument, match="no bundle at"):
        build_handler(ServerlessSettings(bundle=tmp_path / "absent.tar.gz"))
