"""Per-segment metrics, the gap between segments, and the Prometheus gauges of monitoring."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
from prometheus_client import CollectorRegistry

from shipyard.core.errors import InvalidArgument
from shipyard.monitoring import DriftDetector
from shipyard.monitoring.alert_rules import LatencyRule, Observation
from shipyard.monitoring.alerts import AlertManager
from shipyard.monitoring.gauges import MonitoringGauges
from shipyard.monitoring.performance import classification_performance
from shipyard.monitoring.segments import OTHER, segment_performance


def _biased_frame() -> pd.DataFrame:
    """Recall 1.0 for group A, 0.5 for B; a third tiny group C that must not count."""
    rows = []
    for group, hits in (("A", [1] * 40), ("B", [1, 0] * 20)):
        for hit in hits:
            rows.append({"group": group, "label": 1, "pred": hit, "score": 0.9 if hit else 0.3})
            rows.append({"group": group, "label": 0, "pred": 0, "score": 0.1})
    rows += [{"group": "C", "label": 1, "pred": 0, "score": 0.2}] * 3
    return pd.DataFrame(rows)


def test_gap_between_segments_is_a_number() -> None:
    reports = segment_performance(
        _biased_frame(), ["group"], label="label", prediction="pred", score="score"
    )
    report = reports["group"]
    assert set(report.performance) == {"A", "B", "C"}
    assert report.performance["B"].metrics["recall"] == pytest.approx(0.5)
    gap = report.gaps["recall"]
    assert (gap.best, gap.worst) == ("A", "B")  # C has 3 rows: too few to count
    assert gap.gap == pytest.approx(0.5)
    assert report.gaps["log_loss"].best == "A"  # lower is better for log loss
    largest = report.largest_gap()
    assert largest is not None and largest[0] == "recall"


def test_huge_cardinality_is_pooled_and_missing_is_a_segment() -> None:
    frame = pd.DataFrame(
        {"user": [f"u{i}" for i in range(1000)] + [None] * 10, "label": 1, "pred": 1}
    )
    report = segment_performance(frame, ["user"], label="label", prediction="pred", max_segments=5)
    assert len(report["user"].performance) == 5
    assert OTHER in report["user"].performance
    assert report["user"].performance["(missing)"].n_rows == 10


def test_bad_segment_input_is_rejected() -> None:
    frame = _biased_frame()
    with pytest.raises(InvalidArgument, match="window is missing columns: region"):
        segment_performance(frame, ["region"], label="label", prediction="pred")
    with pytest.raises(InvalidArgument, match="task must be classification or regression"):
        segment_performance(frame, ["group"], label="label", prediction="pred", task="ranking")
    assert len(frame) == 163  # the window is untouched


def test_gauges_export_drift_performance_and_gaps() -> None:
    registry = CollectorRegistry()
    gauges = MonitoringGauges(registry)
    rng = np.random.default_rng(0)
    reference = pd.DataFrame({"amount": rng.normal(0, 1, 2000), "kind": ["a", "b"] * 1000})
    window = pd.DataFrame({"amount": rng.normal(2, 1, 500), "kind": ["a", "b"] * 250})
    result = DriftDetector.fit(reference).check(window)
    gauges.observe_drift("fraud", 2, result)
    labels = {"model": "fraud", "version": "2"}
    amount = registry.get_sample_value("shipyard_drift_p_value", {**labels, "feature": "amount"})
    assert amount == result.features["amount"].p_value
    detected = registry.get_sample_value(
        "shipyard_drift_detected", {**labels, "feature": "_overall"}
    )
    assert detected == 1.0
    perf = classification_performance([1, 1], [1, 0], [0.9, 0.4])  # one class: AUC undefined
    gauges.observe_performance("fraud", 2, perf, estimated=True)
    accuracy = registry.get_sample_value(
        "shipyard_model_performance", {**labels, "metric": "accuracy", "kind": "estimated"}
    )
    auc = registry.get_sample_value(
        "shipyard_model_performance", {**labels, "metric": "roc_auc", "kind": "estimated"}
    )
    assert accuracy == 0.5 and auc is not None and math.isnan(auc)
    reports = segment_performance(_biased_frame(), ["group"], label="label", prediction="pred")
    gauges.observe_segments("fraud", 2, reports)
    gap = registry.get_sample_value(
        "shipyard_segment_gap", {**labels, "column": "group", "metric": "recall"}
    )
    assert gap == pytest.approx(0.5)
    manager = AlertManager([LatencyRule(10.0)], fire_after=1, resolve_after=1)
    manager.subscribe(gauges.on_alert)
    manager.evaluate(Observation("fraud", datetime(2026, 1, 1, tzinfo=UTC), latency_p95_ms=50.0))
    firing = {"model": "fraud", "rule": "latency p95"}
    assert registry.get_sample_value("shipyard_alerts_firing", firing) == 1.0
    manager.evaluate(Observation("fraud", datetime(2026, 1, 1, 1, tzinfo=UTC), latency_p95_ms=5.0))
    assert registry.get_sample_value("shipyard_alerts_firing", firing) == 0.0
    gauges.observe_alert("fraud", "drift", True)
    assert (
        registry.get_sample_value("shipyard_alerts_firing", {"model": "fraud", "rule": "drift"})
        == 1.0
    )
    gauges.forget("fraud", 2)
    assert (
        registry.get_sample_value("shipyard_drift_p_value", {**labels, "feature": "amount"}) is None
    )
