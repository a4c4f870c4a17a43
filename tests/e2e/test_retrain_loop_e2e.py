"""The retraining loop closed by real processes: a `shipyard serve --deployments` data plane
logs shifted traffic, ground truth arrives over the control plane's API, and a `shipyard
server` alone takes it from there — its monitoring loop fires a drift alert, the alert starts
the pipeline's run, the candidate beats the champion on the newest labelled traffic, goes out
as a canary and is promoted by the server's rollout controller, while every request is
answered. Each decision is then read back through `shipyard runs show` and the ledger."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from backends import SQLITE_ONLY
from serve_support import open_registry, running, server_env
from sklearn.linear_model import LogisticRegression
from test_rollout_e2e import DATA_PLANE, Load, fast_env
from test_server import ControlPlane

from shipyard.jobs.retrain.config import parse_config
from shipyard.jobs.retrain.pipelines import Pipelines
from shipyard.rollouts.deployments import Deployments

pytestmark = pytest.mark.slow

SUPPORT = Path(__file__).resolve().parents[1] / "support"  # monitor_retrain_steps.py
DEADLINE_S = 180.0
POLICY = {
    "steps": [50, 100],
    "window_s": 1.0,
    "min_requests": 30,
    "max_windows": 10,
    "gates": {"error_rate": {}, "latency": None},  # sub-millisecond models: noise only
}


class Traffic(Load):
    """The new world: `a` is centred on 2 and the truth is `a > 2`. `Load`'s client with its
    own request ids, posting each answer's truth to the control plane's API in batches of
    50, as a labelling service would."""

    def __init__(self, data_plane: str, control_plane: httpx.Client) -> None:
        super().__init__(data_plane)
        self.labels = control_plane
        self.feedback_statuses: Counter[int] = Counter()
        self._pending: list[dict[str, object]] = []
        self._sent = 0

    def call(self) -> tuple[int, str]:
        self._sent += 1
        request_id, a, b = f"t{self._sent}", self._rng.normal(2.0, 1.0), self._rng.normal()
        inputs = [
            {"name": "a", "datatype": "FP64", "shape": [1], "data": [a]},
            {"name": "b", "datatype": "FP64", "shape": [1], "data": [b]},
        ]
        reply = self.http.post("/v2/models/api/infer", json={"id": request_id, "inputs": inputs})
        if reply.status_code == 200:
            self._pending.append({"request_id": request_id, "value": int(a > 2.0)})
        if len(self._pending) >= 50:
            self.feedback_statuses[
                self.labels.post("/feedback", json=self._pending).status_code
            ] += 1
            self._pending = []
        return reply.status_code, reply.headers.get("x-shipyard-model-version", "")


def _prepare(home: Path, database_url: str, tmp_path: Path) -> None:
    """v1 learned the old world (`a > 0`) and is deployed; the pipeline retrains on its
    training file plus the labelled traffic and releases to the deployment as a canary."""
    rng = np.random.default_rng(0)
    data = pd.DataFrame(rng.normal(size=(400, 2)), columns=["a", "b"])
    data["label"] = (data["a"] > 0).astype(np.int64)
    data.to_parquet(tmp_path / "train.parquet")
    features = data[["a", "b"]]
    model = LogisticRegression(max_iter=300).fit(features, data["label"])
    with open_registry(home, database_url) as registry:
        registry.register(model, "fraud", sample_input=features.head(20), reference_data=features)
        Deployments(registry.store).deploy("api", "fraud:1", reason="first release")
        config = {
            "label": "label",
            "sources": [
                {"path": str(tmp_path / "train.parquet")},
                {"logged": {"since": "1h", "deployment": "api"}},
            ],
            "holdout": {"fraction": 0.3},  # the last rows: the newest labelled traffic
            "cooldown_s": 0,
            "gate": {"tolerance": 0.02, "max_latency_ratio": 20},
            "release": {"deployment": "api", "policy": POLICY},
            "on_alerts": ["drift"],
        }
        Pipelines(registry.store).register(
            "retrain-fraud",
            model="fraud",
            entry="monitor_retrain_steps:train",
            config=parse_config(config),
        )


def _primary(control: httpx.Client) -> str:
    revision = control.get("/deployments/api").json()["revision"]
    variants = revision["spec"]["variants"]
    return ",".join(f"{v['model']}:{v['version']}@{v['weight']}" for v in variants)


def _cli(env: dict[str, str], *args: str) -> Any:
    done = subprocess.run(
        [sys.executable, "-m", "shipyard", *args, "--json"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@SQLITE_ONLY
def test_shifted_traffic_is_retrained_validated_canaried_and_promoted(
    tmp_path: Path, database_url: str
) -> None:
    home = tmp_path / "home"
    _prepare(home, database_url, tmp_path)
    serve = fast_env(home, database_url, SHIPYARD_SERVE_LOG_ROLL_S="1")
    control_env = server_env(
        home,
        database_url,
        SHIPYARD_SERVER_CONTROLLER_INTERVAL_S="0.3",
        SHIPYARD_SERVER_MONITOR_INTERVAL_S="0.5",
        SHIPYARD_SERVER_MONITOR_WINDOW_S="60",
        SHIPYARD_SERVER_MONITOR_MIN_ROWS="150",
        SHIPYARD_SERVER_ALERT_FIRE_AFTER="1",
    )
    control_env["PYTHONPATH"] = os.pathsep.join([str(SUPPORT), control_env["PYTHONPATH"]])
    server = ControlPlane(control_env, tmp_path / "logs")
    try:
        server.wait_ready()
        with (
            server.client(server.admin_token) as control,
            running(serve, tmp_path / "logs", *DATA_PLANE) as plane,
            Traffic(plane.url, control) as traffic,
        ):
            deadline = time.monotonic() + DEADLINE_S
            while _primary(control) != "fraud:2@100":
                assert time.monotonic() < deadline, (
                    f"{_primary(control)}; {traffic.answers}\n{server.logs()[-4000:]}"
                )
                time.sleep(0.5)
            time.sleep(1.0)  # the data plane follows within its 0.2 s poll
        assert server.terminate() == 0, server.logs()[-4000:]
    finally:
        server.close()

    # Every request was answered, first by v1, then by both, then by v2 alone.
    assert {status for status, _ in traffic.answers} == {200}, traffic.answers
    assert traffic.answers[(200, "fraud:1")] > 0 and traffic.answers[(200, "fraud:2")] > 0
    assert set(traffic.feedback_statuses) == {200}, traffic.feedback_statuses

    [run] = _cli(serve, "runs", "list")
    shown = _cli(serve, "runs", "show", str(run["id"]))
    assert (shown["status"], shown["trigger"], shown["candidate_version"]) == (
        "succeeded", "alert.drift", 2,
    )  # fmt: skip
    assert shown["trigger_details"]["message"].startswith("fraud v1 drifted on ")
    assert "feature `a` shifted" in shown["trigger_details"]["message"]
    logged = next(s for s in shown["result"]["sources"] if s["kind"] == "logged")
    assert logged["rows"] > 0, logged  # it trained on the labelled traffic
    gate = shown["result"]["gate"]
    assert gate["passed"] and gate["champion"] == "fraud:1", gate
    [metrics] = [c["numbers"] for c in gate["checks"] if c["name"].startswith("metrics")]
    assert metrics["candidate"]["accuracy"] > metrics["champion"]["accuracy"], metrics
    assert shown["result"]["release"]["strategy"] == "canary"

    history = _cli(serve, "deployments", "history", "api")
    # Two steps: the first window at 50 % ends in the promotion.
    trail = [(e["action"], e["actor"]) for e in history[-3:]]
    assert trail == [
        ("deployment.deployed", "retraining"),
        ("rollout.started", "retraining"),
        ("rollout.promoted", "controller"),
    ], trail
    assert history[-3]["reason"] == "retrained; passed the gate against fraud:1"
    actions = [e["action"] for e in _cli(serve, "history", "fraud")]
    assert actions.count("retrain.started") == 1 and "retrain.succeeded" in actions, actions
