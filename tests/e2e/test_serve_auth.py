"""`shipyard serve --auth` and TLS end to end: API keys and scopes over REST and gRPC, key
revocation within the cache TTL, no token in the logs, the bind rule, and TLS on both ports."""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from serve_support import ServerProcess, open_registry, running, server_env
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier
from tritonclient.utils import InferenceServerException

from shipyard.auth.keys import KeyStore
from shipyard.storage.database import Database

pytestmark = pytest.mark.slow
INFER = "/v2/models/forest/infer"
MISSING = {"error": "missing API key"}
INVALID = {"error": "invalid API key"}


@dataclass
class Served:
    server: ServerProcess
    grpc: str
    url: str  # database
    home: Path
    X: np.ndarray
    tokens: dict[str, str]  # scope name -> token


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _register(home: Path, url: str) -> np.ndarray:
    X, y = make_classification(200, 4, random_state=1)
    X = X.astype(np.float32)
    with open_registry(home, url) as registry:
        model = RandomForestClassifier(5, max_depth=3, random_state=0).fit(X, y)
        registry.register(model, "forest", sample_input=X[:20])
    return np.asarray(X[:3])


def _create_key(url: str, *scopes: str) -> str:
    with Database(url) as database:
        return KeyStore(database).create("test-" + "-".join(scopes), scopes)[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("auth")
    url = f"sqlite:///{root / 'db.sqlite'}"
    X = _register(root / "home", url)
    tokens = {scope: _create_key(url, scope) for scope in ("read", "predict", "admin")}
    port = _free_port()
    env = server_env(root / "home", url)
    args = ("forest", "--workers", "1", "--auth")
    with running(env, root / "logs", *args, grpc_port=port) as server:
        yield Served(server, f"127.0.0.1:{port}", url, root / "home", X, tokens)


def _bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def _infer_body(X: np.ndarray) -> dict[str, object]:
    tensor = {"name": "input", "datatype": "FP32", "shape": list(X.shape)}
    return {"inputs": [{**tensor, "data": X.ravel().tolist()}]}


def test_rest_refuses_missing_and_invalid_keys(served: Served) -> None:
    token = served.tokens["predict"]
    key_id = token[3:15]
    other = _create_key(served.url, "predict")
    with httpx.Client(base_url=served.server.url, timeout=10) as http:
        r = http.post(INFER, json=_infer_body(served.X))
        assert r.status_code == 401 and r.json() == MISSING
        assert r.headers["content-type"] == "application/json"
        wrong_secret = f"sy_{key_id}_{other[16:]}"
        unknown_id = f"sy_{'0' * 12}_{token[16:]}"
        for bad in ("nope", token[:-1], unknown_id, wrong_secret, token + "x"):
            r = http.post(INFER, json=_infer_body(served.X), headers=_bearer(bad))
            assert r.status_code == 401 and r.json() == INVALID, bad
        # Authentication comes before the body is read: garbage is still a 401, not a 400.
        r = http.post(INFER, content=b"{not json", headers=_bearer("sy_bad"))
        assert r.status_code == 401 and r.json() == INVALID
        # Paths that match nothing do not tell an anonymous caller they do not exist.
        assert http.get("/v2/nothing").status_code == 401
        assert http.get("/v2/nothing", headers=_bearer(token)).status_code == 404


def test_rest_scopes(served: Served) -> None:
    read, predict, admin = (served.tokens[s] for s in ("read", "predict", "admin"))
    X = served.X
    with httpx.Client(base_url=served.server.url, timeout=10) as http:
        for path in ("/v2/health/live", "/v2/health/ready", "/ping", "/health"):
            assert http.get(path).status_code == 200, path
        r = http.post(INFER, json=_infer_body(X), headers=_bearer(read))
        assert r.status_code == 403 and "predict" in r.json()["error"]
        r = http.post(INFER, json=_infer_body(X), headers=_bearer(predict))
        assert r.status_code == 200, r.text
        r = http.post(INFER, json=_infer_body(X), headers={"x-api-key": predict})
        assert r.status_code == 200, r.text
        v1 = http.post(
            "/v1/models/forest:predict", json={"instances": X.tolist()}, headers=_bearer(predict)
        )
        assert v1.status_code == 200, v1.text
        mlflow = http.post("/invocations", json={"inputs": X.tolist()}, headers=_bearer(predict))
        assert mlflow.status_code == 200, mlflow.text
        assert mlflow.json()["predictions"] == v1.json()["predictions"]
        for token in (read, predict, admin):  # metadata: predict or read
            for path in (
                "/v2",
                "/v2/models/forest",
                "/v2/models/forest/ready",
                "/v1/models/forest",
            ):
                assert http.get(path, headers=_bearer(token)).status_code == 200, path
        load = "/v2/repository/models/forest/load"
        assert http.post(load, headers=_bearer(predict)).status_code == 403
        assert http.post(load, headers=_bearer(read)).status_code == 403
        assert http.get("/metrics").status_code == 401
        assert http.get("/metrics", headers=_bearer(predict)).status_code == 403
        metrics = http.get("/metrics", headers=_bearer(read))
        assert metrics.status_code == 200 and "shipyard_requests_total" in metrics.text


def test_grpc_scopes(served: Served) -> None:
    client = triton_grpc.InferenceServerClient(url=served.grpc)
    try:
        assert client.is_server_live() and client.is_server_ready()  # open
        tensor = triton_grpc.InferInput("input", list(served.X.shape), "FP32")
        tensor.set_data_from_numpy(served.X)
        with pytest.raises(InferenceServerException) as refused:
            client.infer("forest", [tensor])
        assert refused.value.status() == "StatusCode.UNAUTHENTICATED"
        assert "missing API key" in str(refused.value.message())
        with pytest.raises(InferenceServerException) as refused:
            client.infer("forest", [tensor], headers=_bearer(served.tokens["read"]))
        assert refused.value.status() == "StatusCode.PERMISSION_DENIED"
        result = client.infer("forest", [tensor], headers=_bearer(served.tokens["predict"]))
        assert result.as_numpy("predict").shape == (len(served.X),)
        result = client.infer("forest", [tensor], headers={"x-api-key": served.tokens["admin"]})
        assert result.as_numpy("predict").shape == (len(served.X),)
        meta = client.get_model_metadata("forest", headers=_bearer(served.tokens["read"]))
        assert meta.name == "forest"
        with pytest.raises(InferenceServerException) as refused:
            client.get_model_metadata("forest")
        assert refused.value.status() == "StatusCode.UNAUTHENTICATED"
    finally:
        client.close()


def test_a_revoked_key_is_refused_within_the_cache_ttl(served: Served) -> None:
    token = _create_key(served.url, "predict")
    with httpx.Client(base_url=served.server.url, timeout=10) as http:
        assert http.post(INFER, json=_infer_body(served.X), headers=_bearer(token)).is_success
        with Database(served.url) as database:
            KeyStore(database).revoke(token[3:15])
        revoked = time.monotonic()
        while time.monotonic() - revoked < 15:
            r = http.post(INFER, json=_infer_body(served.X), headers=_bearer(token))
            if r.status_code == 401:
                break
            assert r.status_code == 200
            time.sleep(0.2)
        assert r.status_code == 401 and r.json() == {"error": "API key revoked"}
        assert time.monotonic() - revoked < 8  # TTL 5 s + polling


def test_logs_name_keys_never_tokens(served: Served) -> None:
    # Its own calls: under xdist, the module's other tests may run in another process.
    with httpx.Client(base_url=served.server.url, timeout=10) as http:
        body = _infer_body(served.X)
        assert http.post(INFER, json=body, headers=_bearer(served.tokens["predict"])).is_success
        assert http.post(INFER, json=body).status_code == 401
    time.sleep(0.6)  # the access log is flushed every 0.25 s
    logs = served.server.logs()
    for token in served.tokens.values():
        assert token not in logs
        assert token[16:] not in logs  # nor the secret alone
    assert f'"key":"key:{served.tokens["predict"][3:15]}"' in logs
    assert '"status":401' in logs


def _serve_cli(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "shipyard", "serve", "forest", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def test_non_loopback_bind_needs_auth_or_insecure(served: Served, tmp_path: Path) -> None:
    refused = _serve_cli("--host", "0.0.0.0", "--http-port", "0", "--no-grpc")
    assert refused.returncode != 0
    assert "--auth" in refused.stderr and "--insecure" in refused.stderr
    env = server_env(served.home, served.url)
    args = ("forest", "--workers", "1", "--auth")
    with running(env, tmp_path / "logs", *args, host="0.0.0.0") as server:
        assert httpx.get(server.url + "/v2", timeout=10).status_code == 401
        assert httpx.get(server.url + "/v2/health/ready", timeout=10).status_code == 200


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(san, critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_tls_settings_are_checked(served: Served, tmp_path: Path) -> None:
    cert, _ = _self_signed(tmp_path)
    only_cert = _serve_cli("--ssl-certfile", str(cert))
    assert only_cert.returncode != 0 and "both" in only_cert.stderr
    missing = _serve_cli("--ssl-certfile", str(cert), "--ssl-keyfile", str(tmp_path / "nope"))
    assert missing.returncode != 0 and "--ssl-keyfile: no such file" in missing.stderr


def test_tls_on_rest_and_grpc(served: Served, tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    trust = ssl.create_default_context(cafile=str(cert))
    port = _free_port()
    env = server_env(served.home, served.url)
    tls = ("--ssl-certfile", str(cert), "--ssl-keyfile", str(key))
    args = ("forest", "--workers", "1", "--auth", *tls)
    with running(env, tmp_path / "logs", *args, grpc_port=port, verify=trust) as server:
        assert server.url.startswith("https://127.0.0.1:")
        predict = served.tokens["predict"]
        with httpx.Client(base_url=server.url, verify=trust, timeout=10) as http:
            r = http.post(INFER, json=_infer_body(served.X), headers=_bearer(predict))
            assert r.status_code == 200, r.text
        with pytest.raises(httpx.HTTPError):
            httpx.get(server.url.replace("https://", "http://") + "/v2/health/live", timeout=5)
        client = triton_grpc.InferenceServerClient(
            url=f"127.0.0.1:{port}", ssl=True, root_certificates=str(cert)
        )
        try:
            tensor = triton_grpc.InferInput("input", list(served.X.shape), "FP32")
            tensor.set_data_from_numpy(served.X)
            result = client.infer("forest", [tensor], headers=_bearer(predict))
            assert result.as_numpy("predict").shape == (len(served.X),)
        finally:
            client.close()
