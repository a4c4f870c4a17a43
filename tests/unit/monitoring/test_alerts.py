"""Alert rules, hysteresis, budget and subscriptions, on observations built by hand."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from shipyard.core.errors import InvalidArgument
from shipyard.monitoring import DriftDetector
from shipyard.monitoring.alert_rules import (
    DriftRule,
    ErrorRateRule,
    LatencyRule,
    Observation,
    PerformanceRule,
    SegmentGapRule,
)
from shipyard.monitoring.alerts import FIRING, RESOLVED, Alert, AlertManager
from shipyard.monitoring.notifiers import LogNotifier
from shipyard.monitoring.performance import classification_performance
from shipyard.monitoring.segments import segment_performance

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def _latency(minute: int, p95: float) -> Observation:
    return Observation("fraud", _at(minute), version=2, latency_p95_ms=p95)


class Recorder:
    def __init__(self) -> None:
        self.alerts: list[Alert] = []

    def notify(self, alert: Alert) -> None:
        self.alerts.append(alert)


def test_hysteresis_fires_after_n_bad_and_resolves_after_m_good() -> None:
    recorder = Recorder()
    manager = AlertManager([LatencyRule(50.0)], fire_after=3, resolve_after=2, notifiers=[recorder])
    pattern = [80, 80, 10, 80, 80, 80, 10, 80, 10, 10]  # one good window resets the count
    states = [[a.state for a in manager.evaluate(_latency(i, p))] for i, p in enumerate(pattern)]
    assert states == [[], [], [], [], [], [FIRING], [], [], [], [RESOLVED]]
    fired = recorder.alerts[0]
    assert fired.message == (
        "fraud v2: latency p95 80.0 ms is above the SLO of 50 ms (3 windows in a row)"
    )
    assert fired.at == _at(5) and fired.notified
    assert manager.firing("fraud") == []


def test_missing_data_neither_fires_nor_resolves() -> None:
    manager = AlertManager([ErrorRateRule(0.01)], fire_after=2, resolve_after=1)
    assert manager.evaluate(Observation("m", _at(0), error_rate=0.2)) == []
    assert manager.evaluate(Observation("m", _at(1))) == []  # no error rate this window
    [alert] = manager.evaluate(Observation("m", _at(2), error_rate=0.3))
    assert alert.message == "m: error rate 30.00% is above the limit of 1.00% (2 windows in a row)"
    assert manager.firing("m") == ["error rate"]


def test_budget_suppresses_and_counts_excess_notifications() -> None:
    recorder = Recorder()
    manager = AlertManager(
        [LatencyRule(50.0)], fire_after=1, resolve_after=1, budget_per_hour=2, notifiers=[recorder]
    )
    alerts = [a for i in range(6) for a in manager.evaluate(_latency(i, 80 if i % 2 == 0 else 10))]
    assert len(alerts) == 6  # fire, resolve, fire, ... every window
    assert [a.notified for a in alerts] == [True, True, False, False, False, False]
    assert len(recorder.alerts) == 2
    assert manager.suppressed == {"latency p95": 4}
    # An hour after the first notification the budget has room again.
    [later] = manager.evaluate(_latency(61, 80))
    assert later.notified and len(recorder.alerts) == 3


def test_subscribers_get_every_transition_and_can_unsubscribe() -> None:
    manager = AlertManager([LatencyRule(50.0)], fire_after=1, resolve_after=1, budget_per_hour=0)
    seen: list[Alert] = []

    def broken(alert: Alert) -> None:
        raise RuntimeError("subscriber bug")

    manager.subscribe(broken)  # a failing subscriber does not stop the others
    unsubscribe = manager.subscribe(seen.append)
    manager.evaluate(_latency(0, 80))
    unsubscribe()
    manager.evaluate(_latency(1, 10))
    assert [a.state for a in seen] == [FIRING]
    assert manager.suppressed == {"latency p95": 2}  # budget 0: nobody notified, still published


def test_failing_notifier_is_counted_and_others_still_run(caplog: pytest.LogCaptureFixture) -> None:
    class Broken:
        def notify(self, alert: Alert) -> None:
            raise OSError("down")

    recorder = Recorder()
    manager = AlertManager([LatencyRule(50.0)], fire_after=1, notifiers=[Broken(), recorder])
    with caplog.at_level(logging.ERROR):
        manager.evaluate(_latency(0, 80))
    assert manager.failed_notifications == 1 and len(recorder.alerts) == 1
    assert "notifier" in caplog.text


def test_log_notifier_writes_the_message(caplog: pytest.LogCaptureFixture) -> None:
    manager = AlertManager([LatencyRule(50.0)], fire_after=1, notifiers=[LogNotifier()])
    with caplog.at_level(logging.INFO, logger="shipyard.alerts"):
        manager.evaluate(_latency(0, 80))
    assert "alert firing [latency p95]: fraud v2: latency p95 80.0 ms is above" in caplog.text


def test_drift_message_names_feature_what_moved_and_p_value() -> None:
    rng = np.random.default_rng(3)
    reference = pd.DataFrame({"amount": rng.normal(40, 5, 2000), "age": rng.normal(30, 5, 2000)})
    window = pd.DataFrame({"amount": rng.normal(60, 5, 500), "age": rng.normal(30, 5, 500)})
    result = DriftDetector.fit(reference).check(window)
    verdict = DriftRule().evaluate(Observation("fraud", T0, version=3, drift=result))
    assert verdict is not None and verdict.bad
    assert verdict.message.startswith("fraud v3 drifted on 500 rows: feature `amount` shifted: ")
    assert "p=" in verdict.message and "age" not in verdict.details["features"]
    assert verdict.details["features"]["amount"]["p_value"] < 1e-6
    calm = DriftDetector.fit(reference).check(reference.iloc[:500])
    quiet = DriftRule().evaluate(Observation("fraud", T0, drift=calm))
    assert quiet is not None and not quiet.bad


def test_performance_rule_threshold_and_drop() -> None:
    perf = classification_performance([1, 0, 1, 1], [1, 1, 0, 1])  # accuracy 0.5
    obs = Observation("m", T0, realised=perf, estimated=perf)
    below = PerformanceRule("accuracy", below=0.8).evaluate(obs)
    assert below is not None and below.bad
    assert below.message == "m: realised accuracy 0.5 is below 0.8 (4 labelled rows)"
    drop = PerformanceRule("accuracy", reference=0.9, max_drop=0.1, estimated=True)
    verdict = drop.evaluate(obs)
    assert verdict is not None and verdict.bad
    assert verdict.message == (
        "m: estimated accuracy 0.5 is worse than the reference 0.9 by 0.4 (4 scored rows)"
    )
    ok = PerformanceRule("accuracy", below=0.4).evaluate(obs)
    assert ok is not None and not ok.bad
    no_auc = PerformanceRule("roc_auc", below=0.8).evaluate(obs)
    assert no_auc is None  # undefined metric: not judged


def test_segment_gap_rule_reports_best_and_worst_segment() -> None:
    frame = pd.DataFrame(
        {
            "region": ["eu"] * 40 + ["us"] * 40,
            "label": [1, 0] * 40,
            "pred": [1, 0] * 20 + [0, 0] * 20,  # perfect in eu, half wrong in us
        }
    )
    reports = segment_performance(frame, ["region"], label="label", prediction="pred")
    verdict = SegmentGapRule("region", "accuracy", 0.2).evaluate(
        Observation("m", T0, segments=reports)
    )
    assert verdict is not None and verdict.bad
    assert verdict.message == (
        "m: accuracy differs by 0.5 between region=eu (1) and region=us (0.5), "
        "above the limit of 0.2"
    )


def test_bad_configuration_is_rejected() -> None:
    with pytest.raises(InvalidArgument, match="rule names must be unique: latency p95"):
        AlertManager([LatencyRule(1.0), LatencyRule(2.0)])
    with pytest.raises(InvalidArgument, match="fire_after and resolve_after must be at least 1"):
        AlertManager([], fire_after=0)
    with pytest.raises(InvalidArgument, match="give below or max_drop"):
        PerformanceRule("accuracy")
    with pytest.raises(InvalidArgument, match="max_drop needs reference"):
        PerformanceRule("accuracy", max_drop=0.1)
    with pytest.raises(InvalidArgument, match="severity must be one of warning, critical"):
        DriftRule(severity="page-everyone")
    obs = Observation("m", T0, realised=classification_performance([1], [1]))
    with pytest.raises(InvalidArgument, match="unknown metric 'mae' for classification"):
        PerformanceRule("mae", below=1.0).evaluate(obs)
