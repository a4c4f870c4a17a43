"""`shipyard up`: the control plane and a data plane serving every deployment, as one
process group. A deploy made through the management API is served by name; SIGTERM to `up`
stops both processes cleanly."""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from backends import SQLITE_ONLY
from serve_support import open_registry, server_env
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from test_server import ControlPlane, ok

pytestmark = pytest.mark.slow

_DATA_PLANE = re.compile(rb"shipyard serve: every deployment on http://127\.0\.0\.1:(\d+) ")


def _eventually(check: object, what: str, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise AssertionError(f"not in {timeout_s} s: {what}")


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def data_plane_port(up: ControlPlane) -> int:
    """The port `up`'s data plane announced, once it answers ready."""
    found: list[int] = []

    def ready() -> bool:
        match = _DATA_PLANE.search(up.stderr_path.read_bytes())
        if match and not found:
            found.append(int(match.group(1)))
        return bool(found) and _answers(f"http://127.0.0.1:{found[0]}/v2/health/ready")

    _eventually(ready, "the data plane is ready")
    return found[0]


@SQLITE_ONLY
def test_up_serves_what_the_api_deploys_and_stops_as_one(database_url: str, tmp_path: Path) -> None:
    home = tmp_path / "home"
    X, y = make_classification(80, 4, random_state=0)
    X = X.astype(np.float32)
    with open_registry(home, database_url) as registry:
        registry.register(LogisticRegression().fit(X, y), "fraud", sample_input=X[:5])
    env = server_env(home, database_url)
    args = ("--serve-port", "0", "--no-grpc", "--controller-interval-s", "0.5")
    up = ControlPlane(env, tmp_path / "logs", *args, command="up")
    try:
        up.wait_ready(timeout_s=120)
        assert up.admin_token is not None
        serve_url = f"http://127.0.0.1:{data_plane_port(up)}"
        with up.client(up.admin_token) as api:
            ok(api.post("/deployments", json={"name": "checkout", "model": "fraud:1"}), 201)
        body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4],
                            "data": X[0].tolist()}]}  # fmt: skip

        def served() -> bool:
            r = httpx.post(f"{serve_url}/v2/models/checkout/infer", json=body, timeout=10)
            return r.status_code == 200 and r.json()["model_version"] == "fraud:1"

        _eventually(served, "the new deployment is served by name", timeout_s=30)
        assert up.terminate(timeout_s=60) == 0, up.logs()[-3000:]
        # The data plane went down with it.
        assert not _answers(f"{serve_url}/v2/health/live")
    finally:
        up.close()
