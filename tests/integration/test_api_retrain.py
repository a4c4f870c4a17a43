"""Retraining over the management API (in-process app): pipelines and runs are readable
with a read key, a run is started with a deploy key through the control plane's loop, and
bad requests get clear statuses without starting anything."""

from __future__ import annotations

import textwrap
from pathlib import Path

import anyio
import httpx
import numpy as np
import pandas as pd
import pytest
from fastapi import FastAPI
from sklearn.linear_model import LogisticRegression

from shipyard.app.retrain import RetrainLoop
from shipyard.auth.keys import KeyStore
from shipyard.jobs.retrain.config import parse_config
from shipyard.jobs.retrain.pipelines import Pipelines
from shipyard.jobs.retrain.runner import Runner, StoreSpec
from shipyard.packaging.register import Registration, register_model
from shipyard.registry.service import Registry
from shipyard.transports.api.app import create_app

STEPS = """
from sklearn.linear_model import LogisticRegression

def good(context):
    return LogisticRegression(max_iter=300).fit(context.features, context.target)
"""


def _call(app: FastAPI, method: str, path: str, token: str) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.request(method, path, headers={"authorization": f"Bearer {token}"})

    return anyio.run(go)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_pipelines_and_runs_over_the_api(
    registry: Registry, tmp_path: Path, database_url: str, blob_root: Path
) -> None:
    rng = np.random.default_rng(0)
    data = pd.DataFrame(rng.normal(size=(200, 2)), columns=["a", "b"])
    data["label"] = (data["a"] > 0).astype(np.int64)
    data.to_parquet(tmp_path / "train.parquet")
    model = LogisticRegression().fit(data.iloc[:160][["a", "b"]], data.iloc[:160]["label"])
    register_model(registry, model, Registration(name="fraud", sample_input=data[["a", "b"]]))
    (tmp_path / "steps.py").write_text(textwrap.dedent(STEPS))
    config = {
        "label": "label",
        "sources": [{"path": str(tmp_path / "train.parquet")}],
        "gate": {"tolerance": 0.05, "max_latency_ratio": 20},
    }
    pipelines = Pipelines(registry)
    pipelines.register("p", model="fraud", entry="steps:good", config=parse_config(config))
    keys = KeyStore.for_registry(registry)
    _, reader = keys.create("dash", ["read"])
    _, deployer = keys.create("ci", ["deploy"])
    runner = Runner(
        pipelines, StoreSpec(database_url, str(blob_root), "cp"), tmp_path / "runs", cwd=tmp_path
    )
    loop = RetrainLoop(runner)
    app = create_app(registry, key_store=keys, retrainer=loop)
    try:
        assert [p["name"] for p in _call(app, "GET", "/api/v1/pipelines", reader).json()] == ["p"]
        assert _call(app, "POST", "/api/v1/pipelines/p/runs", reader).status_code == 403
        assert _call(app, "POST", "/api/v1/pipelines/ghost/runs", deployer).status_code == 404
        started = _call(app, "POST", "/api/v1/pipelines/p/runs", deployer)
        assert started.status_code == 202 and started.json()["status"] == "running"
        again = _call(app, "POST", "/api/v1/pipelines/p/runs", deployer)
        assert again.status_code == 409 and "already" in again.json()["error"]
        finished = loop.futures[0].result(timeout=120)
        run = _call(app, "GET", f"/api/v1/runs/{finished.id}", reader).json()
        assert run["status"] == "succeeded" and run["candidate_version"] == 2
        assert run["result"]["gate"]["passed"] is True
        assert _call(app, "GET", f"/api/v1/runs/{finished.id}/logs", reader).status_code == 200
        assert _call(app, "GET", "/api/v1/runs/99999", reader).status_code == 404
        assert _call(app, "GET", "/api/v1/runs/0", reader).status_code == 422
        assert len(_call(app, "GET", "/api/v1/runs?pipeline=p", reader).json()) == 1
    finally:
        loop.close()
    without = create_app(registry, key_store=keys)  # a server without retraining
    assert _call(without, "POST", "/api/v1/pipelines/p/runs", deployer).status_code == 503
