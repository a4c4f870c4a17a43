"""What starts retraining: cron schedules, label volumes and alerts — a storm of alerts
starting exactly one run."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from shipyard.app.retrain import RetrainLoop
from shipyard.jobs.retrain.config import parse_config
from shipyard.jobs.retrain.pipelines import Pipelines, RunStatus
from shipyard.jobs.retrain.runner import Runner, StoreSpec
from shipyard.jobs.retrain.triggers import Triggers, schedule_due
from shipyard.packaging.register import Registration, register_model
from shipyard.registry.service import Registry
from shipyard.storage.deployments_table import FeedbackRow, PredictionRow

STEPS = """
from sklearn.linear_model import LogisticRegression

def good(context):
    return LogisticRegression(max_iter=300).fit(context.features, context.target)
"""


@pytest.fixture
def pipelines(registry: Registry, tmp_path: Path) -> Pipelines:
    rng = np.random.default_rng(0)
    data = pd.DataFrame(rng.normal(size=(300, 2)), columns=["a", "b"])
    data["label"] = (data["a"] > 0).astype(np.int64)
    data.to_parquet(tmp_path / "train.parquet")
    seen = data.iloc[:240]
    model = LogisticRegression(max_iter=300).fit(seen[["a", "b"]], seen["label"])
    register_model(registry, model, Registration(name="fraud", sample_input=seen[["a", "b"]]))
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "steps.py").write_text(textwrap.dedent(STEPS))
    pipelines = Pipelines(registry)
    config = {
        "label": "label",
        "sources": [{"path": str(tmp_path / "train.parquet")}],
        "gate": {"tolerance": 0.05, "max_latency_ratio": 20},
        "on_alerts": ["drift"],
        "new_labels": 5,
        "schedule": "0 3 * * *",
    }
    pipelines.register("p", model="fraud", entry="steps:good", config=parse_config(config))
    return pipelines


def test_cron_schedule(pipelines: Pipelines) -> None:
    pipeline = pipelines.get("p")
    day = datetime(2026, 11, 30, tzinfo=UTC)
    last = day - timedelta(hours=21)  # yesterday 03:00
    assert not schedule_due(pipeline, last, day + timedelta(hours=2, minutes=59))
    assert schedule_due(pipeline, last, day + timedelta(hours=3))
    assert not schedule_due(pipeline, day + timedelta(hours=3), day + timedelta(hours=20))


def test_new_labels_make_a_pipeline_due(pipelines: Pipelines) -> None:
    triggers = Triggers(pipelines, lambda due: None)
    now = datetime.now(UTC)
    assert triggers.due(now) == []  # registered just now: no cron tick, no labels yet
    with pipelines.database.write() as session:
        for index in range(6):
            request = f"r{index}"
            session.add(
                PredictionRow(
                    request_id=request,
                    deployment="d",
                    revision=1,
                    model="fraud",
                    version=1,
                    at=now,
                    output=1,
                )
            )
            if index < 5:
                session.add(FeedbackRow(request_id=request, value=1, at=now, actor="t"))
    due = triggers.due(datetime.now(UTC))
    assert [(d.pipeline, d.trigger, d.details) for d in due] == [("p", "labels", {"new_labels": 5})]


def test_an_alert_storm_starts_one_run(
    pipelines: Pipelines, registry: Registry, database_url: str, blob_root: Path, tmp_path: Path
) -> None:
    runner = Runner(
        pipelines,
        StoreSpec(database_url, str(blob_root), "control-plane"),
        tmp_path / "runs",
        cwd=tmp_path / "project",
    )
    loop = RetrainLoop(runner)
    try:
        loop.on_alert("other-model", "drift")
        loop.on_alert("fraud", "latency_slo")  # not a rule this pipeline retrains on
        loop.on_alert("fraud-eu", "drift", {"model": "other-model"})  # another model's deployment
        # A deployment of fraud drifted first, then the model itself, a hundred times.
        loop.on_alert("fraud-eu", "drift", {"model": "fraud", "feature": "a"})
        for _ in range(100):
            loop.on_alert("fraud", "drift", {"feature": "a"})
        results: list[Any] = [f.result(timeout=120) for f in loop.futures]
    finally:
        loop.close()
    assert len(results) == 1 and results[0].status is RunStatus.SUCCEEDED, results
    runs = pipelines.runs("p")
    assert len(runs) == 1 and runs[0].trigger == "alert.drift"
    assert runs[0].trigger_details == {
        "subject": "fraud-eu", "rule": "drift", "model": "fraud", "feature": "a"
    }  # fmt: skip
