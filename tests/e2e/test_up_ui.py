"""`shipyard up` with its web UI in headless Chromium: sign in with the admin key `up`
printed, see what the API deployed and its data plane served, roll back from the UI, and
watch `up`'s own data plane follow."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest
from backends import SQLITE_ONLY
from playwright.sync_api import Browser
from serve_support import open_registry, server_env
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from test_server import ControlPlane, ok
from test_server_up import _eventually, data_plane_port
from test_ui import TIMEOUT_MS, Tab, Ui, browser  # noqa: F401 (browser: a fixture)

pytestmark = pytest.mark.slow


@SQLITE_ONLY
def test_up_with_the_web_ui(
    database_url: str,
    tmp_path: Path,
    browser: Browser,  # noqa: F811 (the fixture imported)
) -> None:
    home = tmp_path / "home"
    X, y = make_classification(80, 4, random_state=0)
    X = X.astype(np.float32)
    with open_registry(home, database_url) as registry:
        for c in (0.01, 10.0):
            registry.register(LogisticRegression(C=c).fit(X, y), "fraud", sample_input=X[:5])
    args = ("--serve-port", "0", "--no-grpc", "--monitor-interval-s", "0")
    up = ControlPlane(server_env(home, database_url), tmp_path / "logs", *args, command="up")
    try:
        up.wait_ready(timeout_s=120)
        token = up.admin_token
        assert token is not None
        port = data_plane_port(up)
        body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4],
                            "data": X[0].tolist()}]}  # fmt: skip

        def serves(version: str) -> bool:
            url = f"http://127.0.0.1:{port}/v2/models/checkout/infer"
            reply = httpx.post(url, json=body, timeout=10)
            return reply.status_code == 200 and reply.json()["model_version"] == version

        with up.client(token) as api:
            ok(api.post("/deployments", json={"name": "checkout", "model": "fraud:1"}), 201)
            ok(api.post("/deployments", json={"name": "checkout", "model": "fraud:2"}), 201)
        _eventually(lambda: serves("fraud:2"), "revision 2 is served", timeout_s=30)

        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.set_default_timeout(TIMEOUT_MS)
        tab = Tab(Ui(up, token, token, token, home, database_url), context, context.new_page())
        tab.page.on("pageerror", lambda error: tab.errors.append(str(error)))
        tab.page.on("request", lambda request: tab.requests.append(request.url))
        tab.sign_in(token)
        assert "fraud" in tab.text("#models-page table")
        tab.go("#/deployments", "#deployments-page")
        assert "fraud:2 100%" in tab.text("#deployments-page table")
        tab.page.click("a[href='#/deployments/checkout']")
        tab.page.wait_for_selector("#deployment-page")
        tab.confirm("#rollback-1", reason="back from the UI")
        assert "rolled back to the routing of revision 1" in tab.flash("ok")
        # up's own data plane follows the rollback made in the browser.
        _eventually(lambda: serves("fraud:1"), "the rollback is served", timeout_s=30)
        with up.client(token) as api:
            history = ok(api.get("/deployments/checkout/history"))
        assert history[-1]["action"] == "deployment.rolled_back"
        assert history[-1]["reason"] == "back from the UI"
        assert history[-1]["actor"].startswith("key:")
        assert tab.errors == [], tab.errors
        outside = [u for u in tab.requests if not u.startswith(up.url + "/")]
        assert tab.requests and outside == [], outside  # only up's own server, no CDN
        context.close()
        assert up.terminate(timeout_s=60) == 0, up.logs()[-3000:]
    finally:
        up.close()
