"""Retraining runs as Ray tasks (a pipeline's `ray:` config) on the tests' Ray cluster: the
same candidate and record as a child process, the log captured, the time limit enforced by
cancelling the task, and an unreachable cluster failing the run with one clear line."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from shipyard.app.retrain import RetrainLoop
from shipyard.core.errors import InvalidArgument
from shipyard.jobs.retrain.config import parse_config
from shipyard.jobs.retrain.pipelines import Pipelines, RunStatus
from shipyard.jobs.retrain.runner import INTERRUPTED, Runner, StoreSpec
from shipyard.packaging.register import Registration, register_model
from shipyard.registry.service import Registry

ray = pytest.importorskip("ray")  # the `ray` extra; scripts/install installs it

# The Ray tests share one cluster (tests/support/ray_cluster.py) on one xdist worker.
pytestmark = [
    pytest.mark.slow,
    pytest.mark.xdist_group("ray"),
    pytest.mark.parametrize("database_url", ["sqlite"], indirect=True),
]

STEPS = """
import time
from sklearn.linear_model import LogisticRegression

def good(context):
    print(f"training on {len(context.data)} rows", flush=True)
    return LogisticRegression(max_iter=500).fit(context.features, context.target)

def hangs(context):
    print("hangs", flush=True)
    time.sleep(600)
"""


@pytest.fixture
def setup(
    registry: Registry, tmp_path: Path, database_url: str, blob_root: Path
) -> tuple[Pipelines, Runner, Path]:
    project = tmp_path / "project"
    (project / "raysteps").mkdir(parents=True)
    (project / "raysteps" / "__init__.py").write_text("")
    (project / "raysteps" / "steps.py").write_text(textwrap.dedent(STEPS))
    rng = np.random.default_rng(0)
    data = pd.DataFrame(rng.normal(size=(400, 2)), columns=["a", "b"])
    data["label"] = (data["a"] > 0).astype(np.int64)
    data.to_parquet(tmp_path / "train.parquet")
    features = data[["a", "b"]]
    champion = LogisticRegression().fit(features.iloc[:300], data["label"].iloc[:300])
    register_model(registry, champion, Registration(name="fraud", sample_input=features.head(20)))
    runner = Runner(
        Pipelines(registry),
        StoreSpec(database_url, str(blob_root), "retraining"),
        tmp_path / "runs",
        cwd=project,
    )
    return runner.pipelines, runner, tmp_path / "train.parquet"


def _register(pipelines: Pipelines, source: Path, entry: str, **overrides: Any) -> None:
    config = {
        "label": "label",
        "sources": [{"path": str(source)}],
        "cooldown_s": 0,
        "gate": {"tolerance": 0.05, "max_latency_ratio": 20},
        **overrides,
    }
    pipelines.register("p", model="fraud", entry=entry, config=parse_config(config))


def test_a_run_trains_as_a_ray_task(
    setup: tuple[Pipelines, Runner, Path], registry: Registry, ray_cluster: str
) -> None:
    pipelines, runner, source = setup
    _register(pipelines, source, "raysteps.steps:good", ray={"address": ray_cluster})
    run = runner.run("p")
    assert run.status is RunStatus.SUCCEEDED, run.error
    assert run.result["executor"] == {"ray": ray_cluster}
    assert run.candidate_version == 2 and run.result["train_rows"] == 320
    assert "training on 320 rows" in Path(str(run.log_path)).read_text()  # the task's output
    candidate = registry.get_version("fraud", 2)
    assert candidate.lineage is not None and candidate.lineage.run_id == str(run.id)
    assert not ray.is_initialized(), "the control process leaves the cluster after the run"


def test_a_ray_task_past_its_time_limit_is_cancelled(
    setup: tuple[Pipelines, Runner, Path], registry: Registry, ray_cluster: str
) -> None:
    pipelines, runner, source = setup
    _register(pipelines, source, "raysteps.steps:hangs", timeout_s=3, ray={"address": ray_cluster})
    run = runner.run("p")
    assert run.status is RunStatus.FAILED
    assert run.error == "training timed out after 3 s and its Ray task was cancelled"
    assert run.candidate_version is None and registry.resolve("fraud").version == 1


def test_an_unreachable_ray_cluster_fails_the_run_clearly(
    setup: tuple[Pipelines, Runner, Path], registry: Registry
) -> None:
    pipelines, runner, source = setup
    _register(pipelines, source, "raysteps.steps:good", ray={"address": "127.0.0.1:1"})
    run = runner.run("p")
    assert run.status is RunStatus.FAILED
    assert (run.error or "").startswith("cannot reach the Ray cluster at 127.0.0.1:1"), run.error
    assert run.candidate_version is None and registry.resolve("fraud").version == 1


@pytest.mark.parametrize(
    ("ray_config", "field"),
    [({"num_cpus": 0}, "ray.num_cpus"), ({"address": ""}, "ray.address"), ({"gpus": 1}, "ray")],
)
def test_bad_ray_settings_are_refused_naming_the_field(
    ray_config: dict[str, Any], field: str, database_url: str
) -> None:
    with pytest.raises(InvalidArgument, match=f"'{field}"):
        parse_config({"label": "y", "sources": [{"path": "a.csv"}], "ray": ray_config})


def test_a_stopping_control_plane_cancels_its_ray_task(
    setup: tuple[Pipelines, Runner, Path], registry: Registry, ray_cluster: str
) -> None:
    pipelines, runner, source = setup
    _register(
        pipelines, source, "raysteps.steps:hangs", timeout_s=600, ray={"address": ray_cluster}
    )
    retraining = RetrainLoop(runner)
    retraining.submit("p")
    deadline = time.monotonic() + 60
    while "hangs" not in _started_log(pipelines):  # the task runs the user's code
        assert time.monotonic() < deadline, "the task never started"
        time.sleep(0.2)
    retraining.close(wait=False)
    [future] = retraining.futures
    run = future.result(timeout=30)
    assert run.status is RunStatus.FAILED and run.error == INTERRUPTED
    assert run.candidate_version is None and registry.resolve("fraud").version == 1


def _started_log(pipelines: Pipelines) -> str:
    [run] = pipelines.runs("p")
    return Path(run.log_path).read_text() if run.log_path else ""
