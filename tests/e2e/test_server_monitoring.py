"""Monitoring inside a real `shipyard server`: shifted predictions in the log under
SHIPYARD_HOME become a drift alert in the history, a POST to the configured webhook, and a
retraining run of the pipeline that retrains on drift."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pandas as pd
import pytest
from backends import SQLITE_ONLY
from serve_support import server_env
from sklearn.linear_model import LogisticRegression
from test_server import ControlPlane

from shipyard.core.events import PredictionEvent
from shipyard.jobs.retrain.config import parse_config
from shipyard.jobs.retrain.pipelines import Pipelines, RunStatus
from shipyard.monitoring.alert_history import AlertHistory
from shipyard.monitoring.alerts import FIRING
from shipyard.monitoring.eventlog import ParquetSink
from shipyard.packaging.register import Registration, register_model
from shipyard.registry.service import Registry

pytestmark = pytest.mark.slow

SUPPORT = Path(__file__).resolve().parents[1] / "support"  # monitor_retrain_steps.py


class Hook(BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []

    def do_POST(self) -> None:
        length = int(self.headers["content-length"])
        Hook.received.append(orjson.loads(self.rfile.read(length)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[str]:
    Hook.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    finally:
        server.shutdown()
        server.server_close()


def prepare(home: Path, database_url: str, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    data = pd.DataFrame(rng.normal(size=(400, 2)), columns=["a", "b"])
    data["label"] = (data["a"] > 0).astype(np.int64)
    data.to_parquet(tmp_path / "train.parquet")
    features = data[["a", "b"]].iloc[:300]
    model = LogisticRegression(max_iter=300).fit(features, data["label"].iloc[:300])
    with Registry.open(database_url, home / "blobs", actor="tester") as registry:
        register_model(
            registry,
            model,
            Registration(name="fraud", sample_input=features, reference_data=features),
        )
        config = {
            "label": "label",
            "sources": [{"path": str(tmp_path / "train.parquet")}],
            "gate": {"tolerance": 0.05, "max_latency_ratio": 20},
            "on_alerts": ["drift"],
        }
        Pipelines(registry).register(
            "p", model="fraud", entry="monitor_retrain_steps:train", config=parse_config(config)
        )
    shifted = rng.normal(size=(300, 2)) + [3.0, 0.0]
    now = datetime.now(UTC)
    sink = ParquetSink(home)
    sink.write(
        [
            PredictionEvent(
                request_id=f"r{i}",
                model="fraud",
                version=1,
                at=now - timedelta(seconds=i),
                inputs={"a": shifted[i : i + 1, 0], "b": shifted[i : i + 1, 1]},
                outputs={"label": np.zeros(1, dtype=np.int64)},
                latency_ms=1.0,
            )
            for i in range(300)
        ]
    )
    sink.close()


@SQLITE_ONLY
def test_the_server_alerts_on_drift_and_retrains(
    database_url: str, tmp_path: Path, webhook: str
) -> None:
    home = tmp_path / "home"
    prepare(home, database_url, tmp_path)
    env = server_env(
        home,
        database_url,
        SHIPYARD_SERVER_MONITOR_INTERVAL_S="0.3",
        SHIPYARD_SERVER_ALERT_FIRE_AFTER="1",
        SHIPYARD_SERVER_ALERT_WEBHOOK_URL=webhook,
    )
    env["PYTHONPATH"] = os.pathsep.join([str(SUPPORT), env["PYTHONPATH"]])
    server = ControlPlane(env, tmp_path / "logs")
    try:
        server.wait_ready()
        with Registry.open(database_url, home / "blobs", actor="tester") as registry:
            history, pipelines = AlertHistory(registry.database), Pipelines(registry)
            deadline = time.monotonic() + 120
            while not (pipelines.runs("p") and pipelines.runs("p")[0].ended_at):
                assert time.monotonic() < deadline, server.logs()[-4000:]
                time.sleep(0.3)
            [run] = pipelines.runs("p")
            [alert] = history.list(subject="fraud")
        scraped = httpx.get(
            f"{server.url}/metrics", headers={"authorization": f"Bearer {server.admin_token}"}
        )
        assert server.terminate() == 0, server.logs()
    finally:
        server.close()
    assert alert.rule == "drift" and alert.state == FIRING and alert.notified
    assert alert.message.startswith("fraud v1 drifted on 300 rows: feature `a` shifted")
    assert run.trigger == "alert.drift" and run.status is RunStatus.SUCCEEDED, run.error
    assert [(h["subject"], h["rule"], h["state"]) for h in Hook.received] == [
        ("fraud", "drift", FIRING)
    ]
    # What the loop judged is what Prometheus scrapes from the control plane.
    assert scraped.status_code == 200, scraped.text
    assert (
        'shipyard_drift_detected{feature="_overall",model="fraud",version="1"} 1.0' in scraped.text
    )
    assert 'shipyard_drift_detected{feature="a",model="fraud",version="1"} 1.0' in scraped.text
    assert 'shipyard_alerts_firing{model="fraud",rule="drift"} 1.0' in scraped.text
    assert "process_resident_memory_bytes" in scraped.text
