"""The control plane's monitoring loop, one tick at a time (SQLite and PostgreSQL): logged
predictions judged against the serving version's reference data, alerts in the history,
notifications, gauges, and a fired drift alert starting the pipeline that retrains on it."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import orjson
import pandas as pd
import pytest
from prometheus_client import CollectorRegistry
from sklearn.linear_model import LogisticRegression

from shipyard.app.monitor_loop import (
    MonitorConfig,
    MonitorLoop,
    alert_manager,
    open_monitor,
)
from shipyard.app.retrain import RetrainLoop
from shipyard.core.errors import InvalidArgument
from shipyard.core.events import PredictionEvent, Sink
from shipyard.jobs.retrain.config import parse_config
from shipyard.jobs.retrain.pipelines import Pipelines, RunStatus
from shipyard.jobs.retrain.runner import Runner, StoreSpec
from shipyard.monitoring.alert_history import AlertHistory
from shipyard.monitoring.alerts import FIRING
from shipyard.monitoring.eventlog import ParquetSink, TableSink
from shipyard.monitoring.feedback import Feedback, FeedbackStore
from shipyard.monitoring.gauges import MonitoringGauges
from shipyard.monitoring.notifiers import LogNotifier, WebhookNotifier
from shipyard.monitoring.serialization import reference_profile
from shipyard.packaging.register import PROFILE_FILE, REFERENCE_FILE, Registration, register_model
from shipyard.registry.service import Registry
from shipyard.storage.deployments_table import RouteStatsRow

SUPPORT = Path(__file__).resolve().parents[1] / "support"  # monitor_retrain_steps.py
NOW = datetime.now(UTC).replace(microsecond=0)
FIRE_AT_ONCE = MonitorConfig(fire_after=1)


@dataclass
class World:
    registry: Registry
    home: Path
    pipelines: Pipelines
    retraining: RetrainLoop


@pytest.fixture
def world(
    registry: Registry, database_url: str, blob_root: Path, tmp_path: Path
) -> Iterator[World]:
    rng = np.random.default_rng(0)
    data = pd.DataFrame(rng.normal(size=(400, 2)), columns=["a", "b"])
    data["label"] = (data["a"] > 0).astype(np.int64)
    data.to_parquet(tmp_path / "train.parquet")
    seen = data.iloc[:300]
    model = LogisticRegression(max_iter=300).fit(seen[["a", "b"]], seen["label"])
    features = seen[["a", "b"]]
    register_model(
        registry, model, Registration(name="fraud", sample_input=features, reference_data=features)
    )
    register_model(registry, model, Registration(name="plain", sample_input=features))
    pipelines = Pipelines(registry)
    config = {
        "label": "label",
        "sources": [{"path": str(tmp_path / "train.parquet")}],
        "gate": {"tolerance": 0.05, "max_latency_ratio": 20},
        "on_alerts": ["drift"],
    }
    entry = "monitor_retrain_steps:train"
    pipelines.register("p", model="fraud", entry=entry, config=parse_config(config))
    store = StoreSpec(database_url, str(blob_root), "control-plane")
    runner = Runner(pipelines, store, tmp_path / "runs", cwd=SUPPORT)
    retraining = RetrainLoop(runner)
    yield World(registry, tmp_path / "home", pipelines, retraining)
    # No run may outlive its database: training still going is interrupted (as a stopping
    # control plane does) and its record written before the database goes.
    retraining.close(wait=False)


def log_predictions(
    home: Path,
    model: str,
    rows: int,
    *,
    shift: float = 0.0,
    seed: int = 1,
    age: timedelta = timedelta(0),
    sink: Sink | None = None,
    deployment: str | None = None,
) -> None:
    """`rows` predictions of `model` v1 in events of 20 rows, ending `age` before NOW, in the
    Parquet log under `home` unless another `sink` is given, served through `deployment`."""
    rng = np.random.default_rng(seed)
    values = rng.normal(size=(rows, 2)) + [shift, 0.0]
    sink = sink or ParquetSink(home)
    events = [
        PredictionEvent(
            request_id=f"{model}-{seed}-{start}",
            model=model,
            version=1,
            at=NOW - age - timedelta(seconds=rows - start),
            inputs={"a": values[start : start + 20, 0], "b": values[start : start + 20, 1]},
            outputs={"label": np.zeros(len(values[start : start + 20]), dtype=np.int64)},
            latency_ms=1.0,
            deployment=deployment,
        )
        for start in range(0, rows, 20)
    ]
    sink.write(events)
    sink.close()


def monitor(world: World, config: MonitorConfig = FIRE_AT_ONCE) -> MonitorLoop:
    return open_monitor(world.registry, world.home, config, on_fire=world.retraining.on_alert)


def test_a_shifted_window_fires_an_alert_that_starts_a_run(world: World) -> None:
    log_predictions(world.home, "fraud", 300, shift=3.0)
    [check] = monitor(world).tick(NOW)
    assert check.judgement is not None and check.judgement.version == 1
    assert [(a.rule, a.state) for a in check.alerts] == [("drift", FIRING)]
    [stored] = AlertHistory(world.registry.database).list(subject="fraud")
    assert stored.state == FIRING and stored.rule == "drift"
    assert stored.message.startswith("fraud v1 drifted on 300 rows: feature `a` shifted")
    [run] = world.pipelines.runs("p")
    assert run.trigger == "alert.drift"
    assert run.trigger_details["subject"] == "fraud"
    assert str(run.trigger_details["message"]).startswith("fraud v1 drifted")
    [future] = world.retraining.futures
    assert future.result(timeout=120).status is RunStatus.SUCCEEDED


def test_each_deployment_of_a_model_is_judged_under_its_own_name(world: World) -> None:
    """Two deployments serve fraud v1; only the EU traffic shifted. The EU deployment's alert
    names it, and its model (which the pipeline retrains on); the US one stays quiet."""
    log_predictions(world.home, "fraud", 400, shift=1.0, deployment="fraud-eu")
    log_predictions(world.home, "fraud", 400, seed=2, deployment="fraud-us")
    [check] = monitor(world).tick(NOW)
    fired = {a.subject: a for a in check.alerts if a.state == FIRING}
    assert "fraud-us" not in fired and "fraud-eu" in fired, fired
    eu = fired["fraud-eu"]
    assert eu.message.startswith("fraud v1 through fraud-eu drifted on 400 rows"), eu.message
    assert eu.details["model"] == "fraud"
    [stored] = AlertHistory(world.registry.database).list(subject="fraud-eu")
    assert stored.rule == "drift" and stored.details["model"] == "fraud"
    runs = world.pipelines.runs("p")  # one run, whichever of the model's alerts came first
    assert len(runs) == 1 and runs[0].trigger == "alert.drift"


def test_a_model_served_through_one_deployment_is_judged_once(world: World) -> None:
    log_predictions(world.home, "fraud", 300, shift=3.0, deployment="fraud-api")
    [check] = monitor(world).tick(NOW)
    assert [(a.subject, a.rule) for a in check.alerts] == [("fraud", "drift")]


def test_predictions_a_replica_logged_to_the_table_are_judged(world: World) -> None:
    """A data plane on another machine logs to the registry's table, not to this HOME."""
    log_predictions(world.home, "fraud", 300, shift=3.0, sink=TableSink(world.registry.database))
    assert not (world.home / "events").exists()
    [check] = monitor(world).tick(NOW)
    assert check.model == "fraud" and check.judgement is not None
    assert [(a.rule, a.state) for a in check.alerts] == [("drift", FIRING)]
    assert check.alerts[0].message.startswith("fraud v1 drifted on 300 rows")


def test_an_unshifted_window_raises_no_alert_and_starts_no_run(world: World) -> None:
    log_predictions(world.home, "fraud", 300)
    [check] = monitor(world).tick(NOW)
    assert check.judgement is not None and check.judgement.observation is not None
    assert check.judgement.observation.drift is not None
    assert not check.judgement.observation.drift.drift
    assert check.alerts == ()
    assert AlertHistory(world.registry.database).list() == []
    assert world.pipelines.runs("p") == [] and world.retraining.futures == []


def test_only_the_window_is_judged(world: World) -> None:
    log_predictions(world.home, "fraud", 300, shift=3.0, age=timedelta(hours=2))
    log_predictions(world.home, "fraud", 300, seed=2)
    [check] = monitor(world).tick(NOW)
    assert check.judgement is not None and check.judgement.n_rows == 300
    assert check.alerts == () and world.pipelines.runs("p") == []


def test_too_few_rows_get_no_judgement(world: World, caplog: pytest.LogCaptureFixture) -> None:
    log_predictions(world.home, "fraud", 100, shift=3.0)
    with caplog.at_level(logging.INFO, logger="shipyard.app.monitor_loop"):
        [check] = monitor(world).tick(NOW)
    assert check.judgement is not None and check.judgement.observation is None
    assert check.judgement.reason == "100 rows of v1 in the window, 200 needed to judge"
    assert "fraud not judged: 100 rows of v1" in caplog.text
    assert AlertHistory(world.registry.database).list() == []
    assert world.pipelines.runs("p") == []


def test_models_without_reference_or_failing_do_not_stop_the_others(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    for model in ("broken", "fraud", "ghost", "plain"):
        log_predictions(world.home, model, 300, shift=3.0)
    features = pd.DataFrame({"a": [0.0, 1.0], "b": [1.0, 0.0]})
    broken = register_model(
        world.registry,
        LogisticRegression().fit(features, [0, 1]),
        Registration(name="broken", sample_input=features, reference_data=features),
    )
    blob = world.registry.artifact_paths(broken)[REFERENCE_FILE]
    blob.chmod(0o644)
    blob.write_bytes(b"not parquet")  # a damaged blob: the version's check fails
    loop = monitor(world)
    with caplog.at_level(logging.INFO, logger="shipyard.app.monitor_loop"):
        checks = {c.model: c for c in loop.tick(NOW)}
        again = {c.model: c for c in loop.tick(NOW + timedelta(seconds=1))}
    assert checks["broken"].judgement is None
    assert "is corrupt" in str(checks["broken"].error)
    assert checks["plain"].judgement is not None
    assert checks["plain"].judgement.reason == "plain v1 was registered without reference data"
    assert checks["ghost"].judgement is not None
    assert checks["ghost"].judgement.reason == "model 'ghost' not found"
    # A lasting condition is logged once, not at every tick.
    assert caplog.text.count("plain not judged: plain v1 was registered without reference") == 1
    assert caplog.text.count("monitoring broken failed; the other models are still") == 1
    assert again["broken"].error == checks["broken"].error and again["fraud"].judgement
    assert [a.subject for a in checks["fraud"].alerts] == ["fraud"]
    assert [run.trigger for run in world.pipelines.runs("p")] == ["alert.drift"]


def test_hysteresis_needs_bad_windows_in_a_row(world: World) -> None:
    log_predictions(world.home, "fraud", 300, shift=3.0)
    loop = monitor(world, MonitorConfig(fire_after=2))
    [first] = loop.tick(NOW)
    assert first.alerts == () and world.pipelines.runs("p") == []
    [second] = loop.tick(NOW + timedelta(seconds=1))
    assert [a.state for a in second.alerts] == [FIRING]
    assert len(world.pipelines.runs("p")) == 1


def test_the_detector_is_fitted_once_per_version(world: World) -> None:
    log_predictions(world.home, "fraud", 300)
    loop = monitor(world)
    loop.tick(NOW)
    fitted = loop.cache.detector("fraud", 1, ["a", "b"])
    loop.tick(NOW + timedelta(seconds=1))
    assert loop.cache.detector("fraud", 1, ["a", "b"]) is fitted


def test_alerts_are_posted_to_the_webhook_and_shown_in_gauges(world: World) -> None:
    posted: list[dict[str, object]] = []

    def receive(request: httpx.Request) -> httpx.Response:
        posted.append(orjson.loads(request.content))
        return httpx.Response(204)

    client = httpx.Client(transport=httpx.MockTransport(receive))
    webhook = WebhookNotifier("http://alerts.example/hook", client=client)
    manager = alert_manager(world.registry, FIRE_AT_ONCE, notifiers=[webhook])
    metrics = CollectorRegistry()
    loop = MonitorLoop(
        world.registry, world.home, manager, FIRE_AT_ONCE, gauges=MonitoringGauges(metrics)
    )
    log_predictions(world.home, "fraud", 300, shift=3.0)
    loop.tick(NOW)
    assert [(p["subject"], p["rule"], p["state"]) for p in posted] == [("fraud", "drift", FIRING)]
    overall = {"model": "fraud", "version": "1", "feature": "_overall"}
    assert metrics.get_sample_value("shipyard_drift_detected", overall) == 1.0
    firing = {"model": "fraud", "rule": "drift"}
    assert metrics.get_sample_value("shipyard_alerts_firing", firing) == 1.0


def test_the_configured_webhook_is_a_notifier(world: World) -> None:
    config = MonitorConfig(webhook_url="https://alerts.example/hook")
    manager = alert_manager(world.registry, config)
    assert [type(n) for n in manager.notifiers] == [LogNotifier, WebhookNotifier]
    with pytest.raises(InvalidArgument, match="webhook URL must be http"):
        alert_manager(world.registry, MonitorConfig(webhook_url="ftp://alerts.example/"))


def test_a_version_registered_with_a_profile_is_judged_from_it(
    registry: Registry, world: World
) -> None:
    """The profile stored at registration is what the loop judges against: with the
    reference table's file gone, the shifted window still fires."""
    rng = np.random.default_rng(4)
    features = pd.DataFrame(rng.normal(size=(300, 2)), columns=["a", "b"])
    model = LogisticRegression().fit(features, (features["a"] > 0).astype(np.int64))
    request = Registration(
        name="profiled", sample_input=features, reference_data=features, profiler=reference_profile
    )
    version = register_model(registry, model, request)
    assert PROFILE_FILE in version.artifacts
    registry.artifact_paths(version)[REFERENCE_FILE].unlink()
    log_predictions(world.home, "profiled", 300, shift=3.0)
    checks = {c.model: c for c in monitor(world).tick(NOW)}
    judgement = checks["profiled"].judgement
    assert judgement is not None and judgement.observation is not None
    assert [(a.rule, a.state) for a in checks["profiled"].alerts] == [("drift", FIRING)]


def log_single_rows(
    home: Path, rows: int, *, latency_ms: float, seed: int = 3
) -> tuple[list[str], np.ndarray]:
    """`rows` one-row requests of fraud v1 (unshifted inputs, predicted `a > 0`), each with
    `latency_ms`; returns their request ids and predictions."""
    rng = np.random.default_rng(seed)
    values = rng.normal(size=(rows, 2))
    predicted = (values[:, 0] > 0).astype(np.int64)
    ids = [f"one-{seed}-{i}" for i in range(rows)]
    sink = ParquetSink(home)
    sink.write(
        [
            PredictionEvent(
                request_id=ids[i],
                model="fraud",
                version=1,
                at=NOW - timedelta(seconds=rows - i),
                inputs={"a": values[i : i + 1, 0], "b": values[i : i + 1, 1]},
                outputs={"label": predicted[i : i + 1]},
                latency_ms=latency_ms,
            )
            for i in range(rows)
        ]
    )
    sink.close()
    return ids, predicted


def test_a_latency_slo_is_judged_on_the_logged_requests(world: World) -> None:
    log_single_rows(world.home, 300, latency_ms=45.0)
    slo = MonitorConfig(fire_after=1, latency_p95_ms=20.0)
    [check] = monitor(world, slo).tick(NOW)
    assert [(a.rule, a.state) for a in check.alerts] == [("latency p95", FIRING)]
    assert (
        check.alerts[0].message
        == "fraud v1: latency p95 45.0 ms is above the SLO of 20 ms (this window)"
    )
    assert world.pipelines.runs("p") == []  # the pipeline retrains on drift, not on this

    relaxed = MonitorConfig(fire_after=1, latency_p95_ms=50.0)
    [quiet] = monitor(world, relaxed).tick(NOW)
    assert quiet.alerts == ()


def test_realised_performance_from_feedback_fires_below_its_floor(world: World) -> None:
    ids, predicted = log_single_rows(world.home, 300, latency_ms=1.0)
    feedback = FeedbackStore(world.registry.database)
    on_accuracy = world.pipelines.get("p").config.model_copy(
        update={"on_alerts": ("realised accuracy",)}
    )
    world.pipelines.register(
        "on-accuracy", model="fraud", entry="monitor_retrain_steps:train", config=on_accuracy
    )
    config = MonitorConfig(fire_after=1, performance="accuracy<0.9", min_labelled=100)
    # 80 labels: fewer than min_labelled, so no judgement either way.
    wrong = [Feedback(i, int(1 - p)) for i, p in zip(ids, predicted, strict=True)]
    feedback.add(wrong[:80], actor="labeller")
    [early] = monitor(world, config).tick(NOW)
    assert early.alerts == ()
    feedback.add(wrong[80:150], actor="labeller")
    [check] = monitor(world, config).tick(NOW)
    assert [(a.rule, a.state) for a in check.alerts] == [("realised accuracy", FIRING)]
    assert check.alerts[0].message == (
        "fraud v1: realised accuracy 0 is below 0.9 (150 labelled rows) (this window)"
    )
    assert AlertHistory(world.registry.database).list(subject="fraud")[0].rule == (
        "realised accuracy"
    )
    # A performance drop starts the pipelines that retrain on it (not the drift one).
    assert [run.trigger for run in world.pipelines.runs("on-accuracy")] == [
        "alert.realised_accuracy"
    ]
    assert world.pipelines.runs("p") == []


def test_right_answers_keep_the_performance_rule_quiet(world: World) -> None:
    ids, predicted = log_single_rows(world.home, 300, latency_ms=1.0)
    right = [Feedback(i, int(p)) for i, p in zip(ids, predicted, strict=True)]
    FeedbackStore(world.registry.database).add(right[:200], actor="labeller")
    config = MonitorConfig(fire_after=1, performance="accuracy<0.9", min_labelled=100)
    [check] = monitor(world, config).tick(NOW)
    assert check.alerts == ()
    # An error-metric floor says nothing about a classifier: not judged, no failure.
    [other] = monitor(world, MonitorConfig(fire_after=1, performance="rmse>0.5")).tick(NOW)
    assert other.alerts == () and other.error is None


def _route_stats(world: World, role: str, requests: int, errors: int) -> None:
    """What a data plane serving deployment `api` wrote for fraud v1 in the window."""
    with world.registry.database.write() as session:
        session.add(
            RouteStatsRow(
                deployment="api", revision=1, model="fraud", version=1, role=role,
                plane="plane-1", at=NOW - timedelta(seconds=30), requests=requests,
                errors=errors, latency=[], predictions=[], shadow_total=0, shadow_agree=0,
            )
        )  # fmt: skip


def test_the_error_rate_the_data_planes_counted_is_judged(world: World) -> None:
    log_single_rows(world.home, 300, latency_ms=1.0)
    config = MonitorConfig(fire_after=1, max_error_rate=0.05)
    _route_stats(world, "shadow", 400, 400)  # a failing shadow: its answers are never returned
    _route_stats(world, "primary", 400, 4)
    [quiet] = monitor(world, config).tick(NOW)
    assert quiet.alerts == ()
    _route_stats(world, "primary", 400, 76)  # 80 errors in 800 requests
    [check] = monitor(world, config).tick(NOW)
    assert [(a.rule, a.state) for a in check.alerts] == [("error rate", FIRING)]
    assert check.alerts[0].message == (
        "fraud v1: error rate 10.00% is above the limit of 5.00% (this window)"
    )
