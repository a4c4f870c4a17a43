"""A bundle exported here serves identical predictions from a fresh venv that has only
shipyard's wheel and the bundle's pinned requirements installed (the issue's "done when")."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import httpx
import numpy as np
import pytest
from serve_support import open_registry, running
from sklearn.ensemble import GradientBoostingClassifier

import shipyard
from shipyard.packaging.bundle import export_bundle

pytestmark = pytest.mark.slow
REPO = Path(shipyard.__file__).resolve().parents[2]


def _run(*command: str | Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [str(c) for c in command], capture_output=True, text=True, timeout=600, env=env
    )
    assert done.returncode == 0, f"{command}:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    return done.stdout


def test_exported_bundle_serves_identical_predictions_in_a_fresh_venv(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    X = rng.normal(size=(400, 6)).astype(np.float32)
    y = (X[:, 0] * X[:, 1] + X[:, 2] > 0).astype(int)
    archive = tmp_path / "churn.tar.gz"
    with open_registry(tmp_path / "home", f"sqlite:///{tmp_path / 'registry.db'}") as registry:
        model = GradientBoostingClassifier(n_estimators=30, random_state=0).fit(X, y)
        registry.register(model, "churn", sample_input=X[:50])
        export_bundle(registry.store, "churn:1", archive)
        loaded = registry.load("churn:1")
        rows = X[:64]
        expected = np.asarray(loaded.predict(rows))
        expected_proba = np.asarray(loaded.predict_proba(rows))
    with tarfile.open(archive) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith("requirements.txt"))
        requirements = tar.extractfile(member).read().decode()  # type: ignore[union-attr]
    (tmp_path / "requirements.txt").write_text(requirements)
    assert "shipyard==" in requirements and "scikit-learn==" in requirements

    # The "other machine": a venv without this one's site-packages, from the wheel and pins.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    wheels, venv = tmp_path / "wheels", tmp_path / "venv"
    _run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", wheels, REPO, env=env)  # fmt: skip
    _run(sys.executable, "-m", "venv", venv, env=env)
    python = str(venv / "bin" / "python")
    _run(python, "-m", "pip", "install", "-q", "--find-links", wheels,
         "-r", tmp_path / "requirements.txt", env=env)  # fmt: skip
    where = _run(python, "-c", "import shipyard, sklearn; print(shipyard.__file__)", env=env)
    assert where.startswith(str(venv)), where  # not this checkout's source

    env.update(SHIPYARD_HOME=str(tmp_path / "device-home"), HOME=str(tmp_path / "device-home"))
    with (
        running(env, tmp_path / "logs", "--bundle", str(archive), python=python) as server,
        httpx.Client(base_url=server.url, timeout=10) as http,
    ):
        name = http.get("/v2/models/churn").json()["inputs"][0]["name"]
        tensor = {"name": name, "shape": list(rows.shape), "datatype": "FP32"}
        response = http.post(
            "/v2/models/churn/infer", json={"inputs": [{**tensor, "data": rows.ravel().tolist()}]}
        )
        assert response.status_code == 200, response.text
        outputs = {o["name"]: o for o in response.json()["outputs"]}
    np.testing.assert_array_equal(np.asarray(outputs["predict"]["data"]), expected)
    proba = np.asarray(outputs["predict_proba"]["data"]).reshape(expected_proba.shape)
    np.testing.assert_array_equal(proba.astype(np.float32), expected_proba.astype(np.float32))
