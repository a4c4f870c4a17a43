"""`shipyard serve --bundle` as a real process: a signed archive serves the exported version's
exact predictions with no registry at all; tampered, wrongly signed or unsigned bundles are
refused before anything listens."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from dockerfile_parse import DockerfileParser
from serve_support import open_registry, running
from sklearn.linear_model import LogisticRegression

from shipyard.monitoring.eventlog import read_events
from shipyard.packaging.bundle import export_bundle
from shipyard.packaging.docker import IMAGE_BUNDLE, export_docker
from shipyard.packaging.signing import generate_keypair

pytestmark = pytest.mark.slow
# Points nowhere: a --bundle server must not need (or touch) the user's registry.
ABSENT_DATABASE = "postgresql://nobody@127.0.0.1:1/absent"


def _export(
    tmp_path: Path, out: Path, sign_key: Path | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Register fraud:1 and fraud:2, export fraud:2 to `out`; return rows and its predictions."""
    rng = np.random.default_rng(3)
    X = rng.normal(size=(120, 4)).astype(np.float32)
    y = (X[:, 0] - 0.5 * X[:, 2] > 0).astype(int)
    with open_registry(tmp_path / "home", f"sqlite:///{tmp_path / 'registry.db'}") as registry:
        registry.register(LogisticRegression(C=0.01).fit(X, y), "fraud", sample_input=X[:30])
        registry.register(LogisticRegression(C=10.0).fit(X, y), "fraud", sample_input=X[:30])
        export_bundle(registry.store, "fraud:2", out, sign_key=sign_key)
        expected = np.asarray(registry.load("fraud:2").predict(X[:16]))
    return X[:16], expected


def _bundle_env(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "tmp").mkdir(exist_ok=True)
    env = dict(os.environ)
    env.update(
        SHIPYARD_HOME=str(tmp_path / "nowhere"),
        SHIPYARD_DATABASE_URL=ABSENT_DATABASE,
        TMPDIR=str(tmp_path / "tmp"),
    )
    return env


@pytest.mark.parametrize("workers", ["1", "2"])
def test_signed_archive_serves_the_exported_predictions(tmp_path: Path, workers: str) -> None:
    private, public = tmp_path / "sign.pem", tmp_path / "sign.pub"
    generate_keypair(private, public)
    archive = tmp_path / "fraud-2.tar.gz"
    rows, expected = _export(tmp_path, archive, sign_key=private)
    env = _bundle_env(tmp_path)
    args = ("--bundle", str(archive), "--public-key", str(public), "--workers", workers)
    with (
        running(env, tmp_path / "logs", *args) as server,
        httpx.Client(base_url=server.url, timeout=10) as http,
    ):
        meta = http.get("/v2/models/fraud").json()
        assert meta["versions"] == ["2"]
        body = {
            "inputs": [
                {
                    "name": meta["inputs"][0]["name"],
                    "shape": list(rows.shape),
                    "datatype": "FP32",
                    "data": rows.ravel().tolist(),
                }
            ]
        }
        response = http.post("/v2/models/fraud/infer", json=body)
        assert response.status_code == 200, response.text
        assert response.headers["X-Shipyard-Model-Version"] == "2"
        outputs = {o["name"]: o for o in response.json()["outputs"]}
        np.testing.assert_array_equal(np.asarray(outputs["predict"]["data"]), expected)
        assert http.get("/v2/models/fraud/versions/1").status_code == 404
        # Row by row from 8 threads: every worker answers each row with its own prediction.
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda i: _one_row(http, meta, rows[i]), range(len(rows))))
        assert answers == expected.tolist()
    logs = server.logs()
    assert "signature verified" in logs and "fraud:2" in logs
    # Nothing of the user's registry was created (only the prediction log, which outlives
    # the server); the private registry is gone after exit.
    assert [p.name for p in (tmp_path / "nowhere").iterdir()] == ["events"]
    logged = read_events(tmp_path / "nowhere", model="fraud")["version"].tolist()
    assert logged == [2] * (2 * len(rows))  # the batch request and the single rows
    assert list((tmp_path / "tmp").glob("shipyard-*")) == []


def _one_row(http: httpx.Client, meta: dict[str, Any], row: np.ndarray) -> Any:
    tensor = {"name": meta["inputs"][0]["name"], "shape": [1, len(row)], "datatype": "FP32"}
    response = http.post(
        "/v2/models/fraud/infer", json={"inputs": [{**tensor, "data": row.tolist()}]}
    )
    assert response.status_code == 200, response.text
    (label,) = {o["name"]: o for o in response.json()["outputs"]}["predict"]["data"]
    return label


def _serve(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "shipyard", "serve", "--http-port", "0", "--no-grpc"]
    return subprocess.run(
        [*command, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_tampered_unsigned_and_wrongly_signed_bundles_are_refused(tmp_path: Path) -> None:
    private, public = tmp_path / "sign.pem", tmp_path / "sign.pub"
    generate_keypair(private, public)
    other_private, other_public = tmp_path / "other.pem", tmp_path / "other.pub"
    generate_keypair(other_private, other_public)
    bundle = tmp_path / "bundle"
    _export(tmp_path, bundle, sign_key=private)
    env = _bundle_env(tmp_path)

    wrong = _serve(env, "--bundle", str(bundle), "--public-key", str(other_public))
    assert wrong.returncode == 6, wrong.stderr
    assert "does not match the public key other.pub" in wrong.stderr

    (bundle / "MANIFEST.sig").unlink()
    unsigned = _serve(env, "--bundle", str(bundle), "--public-key", str(public))
    assert unsigned.returncode == 6 and "is not signed" in unsigned.stderr, unsigned.stderr

    onnx = bundle / "model" / "compiled" / "model.onnx"
    data = onnx.read_bytes()
    onnx.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    tampered = _serve(env, "--bundle", str(bundle))
    assert tampered.returncode == 3, tampered.stderr
    assert "model/compiled/model.onnx does not match its sha256" in tampered.stderr
    assert "on http://" not in tampered.stderr  # refused before anything listened
    assert list((tmp_path / "tmp").glob("shipyard-*")) == []


def test_docker_context_command_and_healthcheck_run_from_its_bundle(tmp_path: Path) -> None:
    """The image's CMD and HEALTHCHECK, run here with the context's bundle in place of the
    image path (no Docker engine on our machines; the host and port are overridden)."""
    with open_registry(tmp_path / "home", f"sqlite:///{tmp_path / 'registry.db'}") as registry:
        X = np.random.default_rng(5).normal(size=(60, 3)).astype(np.float32)
        model = LogisticRegression().fit(X, (X[:, 2] > 0).astype(int))
        registry.register(model, "fraud", sample_input=X[:20])
        context = export_docker(registry.store, "fraud", tmp_path / "ctx")
        expected = np.asarray(registry.load("fraud").predict(X[:5]))
    parsed = DockerfileParser(path=str(context / "Dockerfile"))
    final = [i for i in parsed.structure if i["instruction"] in ("CMD", "HEALTHCHECK")]
    command = json.loads(next(i["value"] for i in final if i["instruction"] == "CMD"))
    assert command[:2] == ["shipyard", "serve"]
    args = [str(context / "bundle") if a == IMAGE_BUNDLE else a for a in command[2:]]
    probe_value = next(i["value"] for i in final if i["instruction"] == "HEALTHCHECK")
    probe = json.loads(probe_value.partition(" CMD ")[2])
    with running(_bundle_env(tmp_path), tmp_path / "logs", *args) as server:
        port = server.url.rpartition(":")[2]
        code = [a.replace("127.0.0.1:8080", f"127.0.0.1:{port}") for a in probe[1:]]
        assert probe[0] == "python"
        assert subprocess.run([sys.executable, *code], timeout=30, check=False).returncode == 0
        body = {
            "inputs": [
                {
                    "name": "input",
                    "shape": [5, 3],
                    "datatype": "FP32",
                    "data": X[:5].ravel().tolist(),
                }
            ]
        }
        response = httpx.post(f"{server.url}/v2/models/fraud/infer", json=body, timeout=10)
        assert response.status_code == 200, response.text
        answer = {o["name"]: o["data"] for o in response.json()["outputs"]}["predict"]
        np.testing.assert_array_equal(np.asarray(answer), expected)
    # The probe fails once nothing answers (exit code non-zero, as Docker needs).
    assert (
        subprocess.run(
            [sys.executable, *code], timeout=30, check=False, capture_output=True
        ).returncode
        != 0
    )
