"""Bad requests over real HTTP: each gets the right 4xx with a JSON error, and the server
stays alive."""

from __future__ import annotations

import gzip
import socket
from collections.abc import Iterator

import httpx
import numpy as np
import orjson
import pytest
from serve_support import ServerProcess, open_registry, server_env
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier

pytestmark = pytest.mark.slow
ROW = {"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [0.1, 0.2, 0.3, 0.4]}
INFER = "/v2/models/forest/infer"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("bad-input")
    url = f"sqlite:///{root / 'db.sqlite'}"
    X, y = make_classification(200, 4, random_state=1)
    with open_registry(root / "home", url) as registry:
        model = RandomForestClassifier(5, max_depth=3, random_state=0).fit(X.astype(np.float32), y)
        registry.register(model, "forest", sample_input=X[:20].astype(np.float32))
    process = ServerProcess(
        server_env(root / "home", url), root / "logs", "forest", "--workers", "1"
    )
    try:
        yield process.wait_ready()
    finally:
        process.terminate()


def _json(doc: object) -> bytes:
    return orjson.dumps(doc)


def _binary_body(header_extra: int) -> tuple[bytes, dict[str, str]]:
    head = _json({"inputs": [{**{k: v for k, v in ROW.items() if k != "data"},
                              "parameters": {"binary_data_size": 16}}]})  # fmt: skip
    raw = np.asarray(ROW["data"], dtype="<f4").tobytes()
    return head + raw, {"inference-header-content-length": str(len(head) + header_extra)}


CASES = [
    ("malformed json", INFER, b'{"inputs": [', {}, 400),
    ("truncated json", INFER, _json({"inputs": [ROW]})[:-7], {}, 400),
    ("empty body", INFER, b"", {}, 400),
    ("wrong content type", INFER, _json({"inputs": [ROW]}), {"content-type": "text/plain"}, 415),
    ("form content type", "/invocations", b"a=1", {"content-type": "application/x-www-form-urlencoded"}, 415),
    ("shape/data mismatch", INFER, _json({"inputs": [{**ROW, "shape": [2, 4]}]}), {}, 400),
    ("unknown datatype", INFER, _json({"inputs": [{**ROW, "datatype": "FP128"}]}), {}, 400),
    ("wrong datatype for model", INFER, _json({"inputs": [{**ROW, "datatype": "BYTES", "data": ["a"] * 4}]}), {}, 400),
    ("non-numeric data", INFER, _json({"inputs": [{**ROW, "data": ["a", "b", "c", "d"]}]}), {}, 400),
    ("NaN literal", INFER, b'{"inputs":[{"name":"input","datatype":"FP32","shape":[1,1],"data":[NaN]}]}', {}, 400),
    ("wrong width", INFER, _json({"inputs": [{**ROW, "shape": [1, 3], "data": [1, 2, 3]}]}), {}, 400),
    ("far larger than the signature", INFER, _json({"inputs": [{**ROW, "shape": [1, 100000], "data": [0.0] * 100000}]}), {}, 400),
    ("unknown field", INFER, _json({"inputs": [ROW], "bogus": 1}), {}, 400),
    ("over-deep json", INFER, b"[" * 5000 + b"]" * 5000, {}, 400),
    ("huge digit string", INFER, b'{"inputs":[{"name":"input","datatype":"INT64","shape":[1],"data":[' + b"9" * 100000 + b"]}]}", {}, 400),
    ("binary header past the end", INFER, *_binary_body(10_000), 400),
    ("binary header non-numeric", INFER, _json({"inputs": [ROW]}), {"inference-header-content-length": "x"}, 400),
    ("gzip bomb", INFER, gzip.compress(b" " * (80 * 1024 * 1024)), {"content-encoding": "gzip"}, 413),
    ("bad gzip", INFER, b"not gzip", {"content-encoding": "gzip"}, 400),
    ("unknown encoding", INFER, _json({"inputs": [ROW]}), {"content-encoding": "br"}, 415),
    ("unknown model", "/v2/models/nope/infer", _json({"inputs": [ROW]}), {}, 404),
    ("unknown version", "/v2/models/forest/versions/9/infer", _json({"inputs": [ROW]}), {}, 404),
    ("unknown v1 model", "/v1/models/nope:predict", _json({"instances": [[1, 2, 3, 4]]}), {}, 404),
    ("mlflow two formats", "/invocations", _json({"instances": [[1, 2, 3, 4]], "inputs": [[1, 2, 3, 4]]}), {"content-type": "application/json"}, 400),
    ("mlflow no format", "/invocations", b"{}", {"content-type": "application/json"}, 400),
    ("kserve not a list", "/v1/models/forest:predict", _json({"instances": 3}), {}, 400),
]  # fmt: skip


@pytest.mark.parametrize(("path", "body", "headers", "status"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])  # fmt: skip
def test_bad_request(
    server: ServerProcess, path: str, body: bytes, headers: dict[str, str], status: int
) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as http:
        response = http.post(path, content=body, headers=headers)
        assert response.status_code == status, response.text
        assert isinstance(response.json()["error"], str) and response.json()["error"]
        assert http.get("/v2/health/live").status_code == 200


@pytest.mark.parametrize(
    "raw_path",
    [
        b"/v2/models/..%2F..%2Fetc%2Fpasswd/infer",
        b"/v2/models/%2e%2e/infer",
        b"/v2/models/%2E%2E%2F%2E%2E/ready",
        b"/v2/models/forest%00/infer",
        b"/v2/models//etc/passwd/infer",
        b"/v2/models/forest/versions/..%2f1/infer",
        b"/v1/models/..:predict",
        b"/v2/repository/models/%2e%2e/load",
    ],
)
def test_path_tricks(server: ServerProcess, raw_path: bytes) -> None:
    status, body = _raw_post(server.address, raw_path, _json({"inputs": [ROW]}))
    assert status in (400, 404), body
    assert "error" in orjson.loads(body.split(b"\r\n\r\n", 1)[1])
    assert httpx.get(server.url + "/v2/health/live").status_code == 200


def test_oversized_body_is_refused(server: ServerProcess) -> None:
    body = b"[" + b"0," * (33 * 1024 * 1024) + b"0]"  # > 64 MiB
    with httpx.Client(base_url=server.url, timeout=60) as http:
        try:
            response = http.post(INFER, content=body)
        except httpx.WriteError:
            pass  # refused before the body was read, and the connection closed: also correct
        else:
            assert response.status_code == 413 and "error" in response.json()
        assert http.get("/v2/health/live").status_code == 200


def test_method_not_allowed(server: ServerProcess) -> None:
    response = httpx.get(server.url + INFER)
    assert response.status_code == 405 and response.headers["allow"] == "POST"


def _raw_post(address: str, path: bytes, body: bytes) -> tuple[int, bytes]:
    """A request with the path exactly as given (httpx would normalise it)."""
    host, port = address.split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        head = b"POST " + path + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        sock.sendall(head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return int(data.split(b" ", 2)[1]), data
