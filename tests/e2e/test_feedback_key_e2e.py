"""Feedback by business key through real processes: `shipyard serve --deployments
--feedback-key order_id` answers over OIP v2 and MLflow /invocations, and a labelling file
that knows only the order ids goes in with `shipyard feedback FILE --key-column order_id`."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
from backends import SQLITE_ONLY
from serve_support import open_registry, running, server_env
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sqlalchemy import select

from shipyard.rollouts.deployments import Deployments
from shipyard.storage.deployments_table import FeedbackRow, PredictionRow


def _stored(home: Path, database_url: str, table: type) -> list[str]:
    with open_registry(home, database_url) as registry, registry.store.database.read() as session:
        return list(session.scalars(select(table.request_id)))  # type: ignore[attr-defined]


@SQLITE_ONLY
def test_labels_by_order_id_find_their_predictions(tmp_path: Path, database_url: str) -> None:
    home = tmp_path / "home"
    rng = np.random.default_rng(5)
    orders = pd.DataFrame(
        {"order_id": np.arange(500, 540), "amount": rng.normal(size=40), "age": rng.normal(size=40)}
    )
    keep = ColumnTransformer([("features", "passthrough", ["amount", "age"])])  # drops the id
    model = make_pipeline(keep, LogisticRegression()).fit(orders, orders["amount"] > 0)
    with open_registry(home, database_url) as registry:
        registry.register(model, "orders", sample_input=orders.head(5))
        Deployments(registry.store).deploy("checkout", "orders:1")
    env = server_env(home, database_url, SHIPYARD_SERVE_STATS_INTERVAL_S="0.2")
    args = ["--deployments", "--default-model", "checkout", "--workers", "1"]
    args += ["--feedback-key", "order_id"]
    with (
        running(env, tmp_path / "logs", *args) as server,
        httpx.Client(base_url=server.url) as http,
    ):
        first = orders.iloc[0]
        inputs = [
            {"name": "order_id", "datatype": "INT64", "shape": [1], "data": [int(first.order_id)]},
            {"name": "amount", "datatype": "FP64", "shape": [1], "data": [first.amount]},
            {"name": "age", "datatype": "FP64", "shape": [1], "data": [first.age]},
        ]
        r = http.post("/v2/models/checkout/infer", json={"inputs": inputs})
        assert r.status_code == 200, r.text
        by_oip = r.json()["id"]
        split = orders.iloc[[1]].to_dict(orient="split", index=False)
        r = http.post(
            "/invocations", json={"dataframe_split": split}, headers={"x-request-id": "mlflow-1"}
        )
        assert r.status_code == 200, r.text
        deadline = time.monotonic() + 30
        while len(_stored(home, database_url, PredictionRow)) < 2:
            assert time.monotonic() < deadline, server.logs()[-3000:]
            time.sleep(0.2)

    labels = tmp_path / "labels.csv"
    labels.write_text("order_id,label\n500,1\n501,0\n502,1\n")
    done = subprocess.run(
        [sys.executable, "-m", "shipyard", "feedback", str(labels), "--key-column", "order_id"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "3 rows: 2 stored" in done.stdout and "('502')" in done.stdout, done.stdout
    assert sorted(_stored(home, database_url, FeedbackRow)) == sorted([by_oip, "mlflow-1"])
