"""Retraining runs end to end on both databases: a real training process per run, the gate
against the champion, and every way a run can fail recorded without touching serving."""

from __future__ import annotations

import multiprocessing
import os
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from shipyard.app.retrain import RetrainLoop
from shipyard.core.errors import Conflict, FailedPrecondition, InvalidArgument, NotFound
from shipyard.jobs.retrain.config import parse_config
from shipyard.jobs.retrain.pipelines import Pipelines, RunStatus
from shipyard.jobs.retrain.runner import INTERRUPTED, Runner, StoreSpec
from shipyard.packaging.register import Registration, register_model
from shipyard.registry.service import Registry

TRAIN_MODULE = """
import time
import numpy as np
from sklearn.linear_model import LogisticRegression

def good(context):
    return LogisticRegression(max_iter=500).fit(context.features, context.target)

def worse(context):
    rng = np.random.default_rng(context.seed)
    shuffled = rng.permutation(context.target.to_numpy())
    return LogisticRegression(max_iter=500).fit(context.features, shuffled)

def other_columns(context):
    features = context.features[["b", "c"]]
    return LogisticRegression(max_iter=500).fit(features, context.target)

def raises(context):
    raise ValueError("the data is cursed")

def hangs(context):
    time.sleep(600)

def not_a_model(context):
    return "hello"
"""


def _data(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(rows, 3)), columns=["a", "b", "c"])
    frame["label"] = (frame["a"] + 0.5 * frame["b"] > 0).astype(np.int64)
    return frame


@pytest.fixture
def setup(registry: Registry, tmp_path: Path, database_url: str, blob_root: Path) -> Any:
    package = tmp_path / "project" / "trainpkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "steps.py").write_text(textwrap.dedent(TRAIN_MODULE))
    data = _data(600, 1)
    source = tmp_path / "train.parquet"
    data.to_parquet(source)
    # The champion saw what the pipeline trains on (the first 80 %), not the holdout.
    seen = data.iloc[:480]
    features = seen.drop(columns=["label"])
    champion = LogisticRegression(max_iter=500).fit(features, seen["label"])
    register_model(registry, champion, Registration(name="fraud", sample_input=features.head(20)))
    pipelines = Pipelines(registry)
    runner = Runner(
        pipelines,
        StoreSpec(database_url, str(blob_root), "retrainer"),
        tmp_path / "runs",
        cwd=tmp_path / "project",
    )
    return pipelines, runner, source


def _config(source: Path, **overrides: Any) -> Any:
    base: dict[str, Any] = {
        "label": "label",
        "sources": [{"path": str(source)}],
        "cooldown_s": 0,
        "timeout_s": 60,
        "gate": {"tolerance": 0.02, "max_latency_ratio": 20},
        "release": {"alias": "champion"},
    }
    base.update(overrides)
    return parse_config(base)


def test_a_good_candidate_is_released_and_recorded(setup: Any, registry: Registry) -> None:
    pipelines, runner, source = setup
    pipelines.register(
        "nightly", model="fraud", entry="trainpkg.steps:good", config=_config(source)
    )
    run = runner.run("nightly", trigger="manual")
    assert run.status is RunStatus.SUCCEEDED, run.error
    assert run.candidate_version == 2
    assert run.result["gate"]["passed"] and run.result["release"]["alias"] == "champion"
    assert run.result["train_rows"] == 480 and run.result["data"]["rows"] == 480
    assert "scikit-learn" in run.result["packages"]
    version = registry.get_version("fraud", 2)
    assert version.stage is None and version.lineage.parent_version == 1
    assert version.lineage.run_id == str(run.id)
    assert registry.resolve("fraud@champion").version == 2
    actions = [e.action for e in registry.history("fraud")]
    assert "retrain.started" in actions and actions[-1] == "retrain.succeeded"
    assert Path(run.log_path or "").is_file()


def test_a_worse_candidate_is_rejected_and_never_resolved(setup: Any, registry: Registry) -> None:
    pipelines, runner, source = setup
    pipelines.register("p", model="fraud", entry="trainpkg.steps:worse", config=_config(source))
    run = runner.run("p")
    assert run.status is RunStatus.REJECTED
    assert "accuracy" in (run.error or "") and run.result["gate"]["passed"] is False
    assert registry.get_version("fraud", 2).stage == "rejected"
    assert registry.resolve("fraud").version == 1  # serving by name never sees it


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_an_incompatible_signature_is_rejected(setup: Any, registry: Registry) -> None:
    pipelines, runner, source = setup
    pipelines.register(
        "p", model="fraud", entry="trainpkg.steps:other_columns", config=_config(source)
    )
    run = runner.run("p")
    assert run.status is RunStatus.REJECTED
    assert "signature incompatible" in (run.error or "") and "'a' is missing" in (run.error or "")


# Failures of the user's code do not depend on the backend: SQLite only (a process each).
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    ("entry", "overrides", "message"),
    [
        ("nope.module:train", {}, "is not importable: ModuleNotFoundError"),
        ("trainpkg.steps:missing", {}, "has no function 'missing'"),
        ("trainpkg.steps:raises", {}, "train failed: ValueError: the data is cursed"),
        ("trainpkg.steps:not_a_model", {}, "str"),
        ("trainpkg.steps:hangs", {"timeout_s": 3}, "timed out after 3 s"),
        ("trainpkg.steps:good", {"label": "nolabel"}, "no label column 'nolabel'"),
    ],
)
def test_failed_runs_are_recorded_and_change_nothing(
    setup: Any, registry: Registry, entry: str, overrides: dict[str, Any], message: str
) -> None:
    pipelines, runner, source = setup
    pipelines.register("p", model="fraud", entry=entry, config=_config(source, **overrides))
    run = runner.run("p")
    assert run.status is RunStatus.FAILED and message in (run.error or ""), run.error
    assert registry.resolve("fraud").version == 1
    assert pipelines.runs("p")[0].status is RunStatus.FAILED
    assert pipelines.recover() == []  # nothing left running


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_empty_training_data_fails_the_run(setup: Any, tmp_path: Path) -> None:
    pipelines, runner, _ = setup
    empty = tmp_path / "empty.parquet"
    _data(10, 2).iloc[:0].to_parquet(empty)
    pipelines.register("p", model="fraud", entry="trainpkg.steps:good", config=_config(empty))
    run = runner.run("p")
    assert run.status is RunStatus.FAILED and "empty" in (run.error or "")


def test_a_trigger_storm_starts_one_run(setup: Any) -> None:
    pipelines, _, source = setup
    pipelines.register("p", model="fraud", entry="trainpkg.steps:good", config=_config(source))
    started: list[int] = []
    refused: list[Exception] = []

    def trigger() -> None:
        try:
            started.append(pipelines.start_run("p", "alert.drift").id)
        except (Conflict, FailedPrecondition) as exc:
            refused.append(exc)

    threads = [threading.Thread(target=trigger) for _ in range(100)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(started) == 1 and len(refused) == 99
    pipelines.finish_run(started[0], RunStatus.FAILED, error="test over")


def test_cooldown_and_bad_configs(setup: Any) -> None:
    pipelines, _, source = setup
    config = _config(source, cooldown_s=3600)
    pipelines.register("p", model="fraud", entry="trainpkg.steps:good", config=config)
    first = pipelines.start_run("p", "schedule")
    pipelines.finish_run(first.id, RunStatus.FAILED, error="x")
    with pytest.raises(FailedPrecondition, match="cooling down"):
        pipelines.start_run("p", "schedule")
    pipelines.finish_run(
        pipelines.start_run("p", "manual", respect_cooldown=False).id, RunStatus.FAILED
    )
    with pytest.raises(InvalidArgument, match="'sources'"):
        parse_config({"label": "y", "sources": []})
    with pytest.raises(InvalidArgument, match="'schedule'"):
        parse_config({"label": "y", "sources": [{"path": "a.csv"}], "schedule": "every day"})
    with pytest.raises(InvalidArgument, match="'release'"):
        parse_config({"label": "y", "sources": [{"path": "a.csv"}], "release": {}})
    with pytest.raises(InvalidArgument, match="package.module:function"):
        pipelines.register("q", model="fraud", entry="not an entry", config=config)
    with pytest.raises(NotFound):
        pipelines.register("q", model="ghost", entry="a.b:c", config=config)
    assert [p.name for p in pipelines.list()] == ["p"]


def _start_and_die(url: str, blobs: str) -> None:
    registry = Registry.open(url, blobs, actor="control-plane")
    Pipelines(registry).start_run("p", "schedule")
    os._exit(0)  # the control plane dies mid-run, without finishing it


def test_a_run_whose_control_process_died_is_failed_and_can_be_retried(
    setup: Any, database_url: str, blob_root: Path
) -> None:
    pipelines, runner, source = setup
    pipelines.register("p", model="fraud", entry="trainpkg.steps:good", config=_config(source))
    child = multiprocessing.get_context("spawn").Process(
        target=_start_and_die, args=(database_url, str(blob_root))
    )
    child.start()
    child.join(timeout=60)
    assert pipelines.runs("p")[0].status is RunStatus.RUNNING
    assert len(pipelines.recover()) == 1
    interrupted = pipelines.runs("p")[0]
    assert interrupted.status is RunStatus.FAILED and "interrupted" in (interrupted.error or "")
    assert interrupted.candidate_version is None  # no orphan candidate to deploy
    assert runner.run("p").status is RunStatus.SUCCEEDED  # and a retry runs


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_closing_without_waiting_interrupts_training(setup: Any, registry: Registry) -> None:
    """A control plane that stops kills the training in progress instead of waiting up to
    its time limit: the run ends FAILED as interrupted, no candidate, serving untouched, and
    the loop starts no new training after it."""
    pipelines, runner, source = setup
    config = _config(source, timeout_s=600)
    pipelines.register("p", model="fraud", entry="trainpkg.steps:hangs", config=config)
    pipelines.register("q", model="fraud", entry="trainpkg.steps:good", config=config)
    retraining = RetrainLoop(runner)  # one run at a time: q waits for p
    retraining.submit("p")
    retraining.submit("q")
    deadline = time.monotonic() + 60
    while not runner._children:  # the training process is running
        assert time.monotonic() < deadline, "training never started"
        time.sleep(0.05)
    [child] = runner._children
    retraining.close(wait=False)
    run, queued = (future.result(timeout=30) for future in retraining.futures)
    assert child.poll() is not None, "the training process was killed"
    assert run.status is RunStatus.FAILED and run.error == INTERRUPTED
    # The queued run is not left `running`: it ends as interrupted, without training.
    assert (queued.pipeline, queued.status, queued.error) == ("q", RunStatus.FAILED, INTERRUPTED)
    assert run.candidate_version is None and registry.resolve("fraud").version == 1
    assert pipelines.recover() == []  # ended, not left running
    again = runner.run("p")  # this runner was interrupted: it starts no training
    assert again.status is RunStatus.FAILED and again.error == INTERRUPTED
