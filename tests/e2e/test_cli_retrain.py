"""Retraining from the command line: pipelines, retrain, runs, and the CI validation gate
(exit 0/1 with --json), plus a pipeline that releases into a deployment as a canary."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from sklearn.linear_model import LogisticRegression
from typer.testing import CliRunner

from shipyard.app.retrain import open_runner
from shipyard.app.settings import Settings
from shipyard.cli import app
from shipyard.client import Registry
from shipyard.jobs.retrain.config import parse_config
from shipyard.jobs.retrain.pipelines import Pipelines, RunStatus
from shipyard.rollouts.deployments import Deployments
from shipyard.rollouts.progress import Rollouts

STEPS = """
import numpy as np
from sklearn.linear_model import LogisticRegression

def good(context):
    return LogisticRegression(max_iter=500).fit(context.features, context.target)

def broken(context):
    raise RuntimeError("no GPU today")
"""


def _frame(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(rows, 3)), columns=["a", "b", "c"])
    frame["label"] = (frame["a"] - frame["c"] > 0).astype(np.int64)
    return frame


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """SQLite only: the database semantics of runs are covered on both backends by
    tests/integration/test_retrain.py; each run here costs a training process."""
    return f"sqlite:///{tmp_path / 'shipyard.db'}"


@pytest.fixture
def project(tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SHIPYARD_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SHIPYARD_DATABASE_URL", database_url)
    monkeypatch.chdir(tmp_path)  # the pipeline's package is importable from here
    (tmp_path / "steps.py").write_text(textwrap.dedent(STEPS))
    data = _frame(500, 0)
    data.to_parquet(tmp_path / "train.parquet")
    seen = data.iloc[:400]
    good = LogisticRegression(max_iter=500).fit(seen[["a", "b", "c"]], seen["label"])
    bad = LogisticRegression(max_iter=500).fit(seen[["a", "b", "c"]], 1 - seen["label"])
    sio.dump(good, tmp_path / "good.skops")
    sio.dump(bad, tmp_path / "bad.skops")
    seen[["a", "b", "c"]].head(20).to_csv(tmp_path / "sample.csv", index=False)
    data.iloc[400:].to_parquet(tmp_path / "holdout.parquet")
    (tmp_path / "pipeline.yaml").write_text(
        "label: label\nsources:\n  - path: train.parquet\ncooldown_s: 0\n"
        "gate: {tolerance: 0.02, max_latency_ratio: 20}\nrelease: {alias: production}\n"
    )
    for name in ("good", "bad"):
        code, _, err = _run("register", "fraud", f"{name}.skops", "--sample", "sample.csv")
        assert code == 0, err
    return tmp_path


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_validate_is_a_ci_gate(project: Path) -> None:
    args = ("--data", "holdout.parquet", "--label", "label", "--max-latency-ratio", "0")
    code, out, _ = _run("validate", "fraud:1", "--against", "fraud:2", *args, "--json")
    assert code == 0 and json.loads(out)["passed"] is True
    code, out, _ = _run("validate", "fraud:2", "--against", "fraud:1", *args, "--json")
    report = json.loads(out)
    assert code == 1 and report["passed"] is False
    assert any("accuracy" in reason for reason in report["reasons"])
    code, _, err = _run(
        "validate",
        "fraud:2",
        "--against",
        "fraud:1",
        "--data",
        "holdout.parquet",
        "--label",
        "nope",
    )
    assert code == 3 and "no column 'nope'" in err
    code, _, err = _run("validate", "fraud:9", "--against", "fraud:1", *args)
    assert code == 4 and "no version 9" in err


def test_pipeline_register_retrain_and_inspect_runs(project: Path) -> None:
    code, _, err = _run(
        "pipelines",
        "register",
        "nightly",
        "--model",
        "fraud",
        "--entry",
        "steps:good",
        "--config",
        "pipeline.yaml",
    )
    assert code == 0, err
    code, out, _ = _run("pipelines", "list", "--json")
    listed = json.loads(out)
    assert listed[0]["config"]["sources"][0]["path"] == str(project / "train.parquet")
    code, out, err = _run("retrain", "nightly", "--json")
    run = json.loads(out)
    assert code == 0, err
    assert run["status"] == "succeeded" and run["candidate_version"] == 3
    code, out, _ = _run("runs", "show", str(run["id"]), "--json")
    assert json.loads(out)["result"]["release"]["alias"] == "production"
    code, out, _ = _run("runs", "list", "--pipeline", "nightly", "--json")
    assert [r["id"] for r in json.loads(out)] == [run["id"]]
    code, out, _ = _run("runs", "logs", str(run["id"]))
    assert code == 0
    with Registry() as registry:
        assert registry.get("fraud@production").version == 3


def test_bad_pipelines_fail_clearly(project: Path) -> None:
    (project / "bad.yaml").write_text("label: label\nsources: []\n")
    code, _, err = _run(
        "pipelines",
        "register",
        "p",
        "--model",
        "fraud",
        "--entry",
        "steps:good",
        "--config",
        "bad.yaml",
    )
    assert code == 3 and "'sources'" in err
    code, _, err = _run("retrain", "ghost")
    assert code == 4 and "pipeline 'ghost' not found" in err
    _run(
        "pipelines",
        "register",
        "p",
        "--model",
        "fraud",
        "--entry",
        "steps:broken",
        "--config",
        "pipeline.yaml",
    )
    code, out, _ = _run("retrain", "p")
    assert code == 1 and "train failed: RuntimeError: no GPU today" in out
    code, out, _ = _run("runs", "list", "--json")
    assert json.loads(out)[0]["status"] == "failed"
    with Registry() as registry:
        assert registry.get("fraud").version == 2  # nothing new was released


def test_a_pipeline_releases_into_a_deployment_as_a_canary(project: Path) -> None:
    with Registry() as client:
        registry = client.store
        deployments = Deployments(registry)
        deployments.deploy("fraud-api", "fraud:1")
        config = parse_config(
            {
                "label": "label",
                "sources": [{"path": str(project / "train.parquet")}],
                "cooldown_s": 0,
                "gate": {"tolerance": 0.02, "max_latency_ratio": 20},
                "release": {"deployment": "fraud-api", "policy": {"steps": [20, 100]}},
            }
        )
        Pipelines(registry).register("p", model="fraud", entry="steps:good", config=config)
        run = open_runner(registry, Settings()).run("p")
        assert run.status is RunStatus.SUCCEEDED, run.error
        assert run.result["gate"]["champion"] == "fraud:1"
        spec = deployments.get("fraud-api").revision.spec
        assert [(v.ref, v.weight) for v in spec.variants] == [("fraud:1", 80), ("fraud:3", 20)]
        assert registry.get_version("fraud", 3).stage == "candidate"
        Rollouts(deployments).promote("fraud-api", reason="looks good")
        assert registry.get_version("fraud", 3).stage is None
        assert registry.resolve("fraud").version == 3
