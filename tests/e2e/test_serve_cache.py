"""`shipyard serve --cache`: repeated requests are answered from the cache with the same
outputs and the version that answered; a bad cache spec is refused before anything starts."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest
from serve_support import open_registry, running, server_env
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier
from typer.testing import CliRunner

from shipyard.cli import app as cli

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("cache", ["lru", "redis://127.0.0.1:6379/0"])
def test_repeated_requests_are_answered_alike(tmp_path: Path, cache: str) -> None:
    url, home = f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path / "home"
    X, y = make_classification(200, 6, random_state=0)
    X = X.astype(np.float32)
    model = RandomForestClassifier(5, max_depth=3, random_state=0).fit(X, y)
    with open_registry(home, url) as registry:
        registry.register(model, "forest", sample_input=X[:20])
    body = {
        "inputs": [
            {"name": "input", "datatype": "FP32", "shape": [3, 6], "data": X[:3].ravel().tolist()}
        ]
    }
    env = server_env(home, url)
    with running(env, tmp_path / "logs", "forest", "--workers", "1", "--cache", cache) as server:
        answers = [httpx.post(f"{server.url}/v2/models/forest/infer", json=body) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 200]
    outputs = [a.json()["outputs"] for a in answers]
    assert outputs[0] == outputs[1] == outputs[2]
    predict = next(o for o in outputs[0] if o["name"] == "predict")
    assert predict["data"] == model.predict(X[:3]).tolist()
    assert {a.headers["x-shipyard-model-version"] for a in answers} == {"1"}


def test_bad_cache_spec_is_refused(tmp_path: Path) -> None:
    env = {
        "SHIPYARD_HOME": str(tmp_path / "home"),
        "SHIPYARD_DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite'}",
    }
    result = CliRunner().invoke(cli, ["serve", "forest", "--cache", "memcached://x"], env=env)
    assert result.exit_code == 3 and "--cache must be 'lru' or a redis:// URL" in result.stderr
