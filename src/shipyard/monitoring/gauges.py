"""Prometheus gauges of monitoring, registered into an injected CollectorRegistry.

Like serving/metrics.py, nothing here touches prometheus_client's global registry: the app owns
one registry and passes it in; tests build a fresh one. A check writes the latest value per
label set; a feature that stops being tested keeps its last value until `forget` is called.
"""

from __future__ import annotations

import math

from prometheus_client import CollectorRegistry, Gauge

from shipyard.monitoring.alerts import FIRING, Alert
from shipyard.monitoring.performance import Performance
from shipyard.monitoring.result import DriftResult
from shipyard.monitoring.segments import SegmentReport

DRIFT_P_VALUE = "shipyard_drift_p_value"
DRIFT_SCORE = "shipyard_drift_score"
DRIFT_DETECTED = "shipyard_drift_detected"
PERFORMANCE = "shipyard_model_performance"
SEGMENT_GAP = "shipyard_segment_gap"
ALERTS_FIRING = "shipyard_alerts_firing"

OVERALL = "_overall"  # the feature label of the dataset-level decision
REALISED = "realised"
ESTIMATED = "estimated"


class MonitoringGauges:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.p_value = Gauge(
            DRIFT_P_VALUE,
            "Drift test p-value per feature (raw; feature=_overall is the Holm-adjusted minimum).",
            ["model", "version", "feature"],
            registry=registry,
        )
        self.score = Gauge(
            DRIFT_SCORE,
            "Drift test statistic per feature (larger is more drift).",
            ["model", "version", "feature"],
            registry=registry,
        )
        self.detected = Gauge(
            DRIFT_DETECTED,
            "1 when the last check found drift, per feature and overall.",
            ["model", "version", "feature"],
            registry=registry,
        )
        self.performance = Gauge(
            PERFORMANCE,
            "Realised or estimated performance of the last window, per metric.",
            ["model", "version", "metric", "kind"],
            registry=registry,
        )
        self.segment_gap = Gauge(
            SEGMENT_GAP,
            "Largest difference of a metric between segments of a column.",
            ["model", "version", "column", "metric"],
            registry=registry,
        )
        self.alerts_firing = Gauge(
            ALERTS_FIRING,
            "1 while an alert rule is firing for a model.",
            ["model", "rule"],
            registry=registry,
        )

    def observe_drift(self, model: str, version: int, result: DriftResult) -> None:
        v = str(version)
        tests = list(result.features.values())
        if result.multivariate is not None:
            tests.append(result.multivariate)
        for test in tests:
            self.p_value.labels(model, v, test.name).set(test.p_value)
            self.score.labels(model, v, test.name).set(_finite(test.statistic))
            self.detected.labels(model, v, test.name).set(1.0 if test.drift else 0.0)
        self.p_value.labels(model, v, OVERALL).set(result.p_value)
        self.detected.labels(model, v, OVERALL).set(1.0 if result.drift else 0.0)

    def observe_performance(
        self, model: str, version: int, performance: Performance, *, estimated: bool = False
    ) -> None:
        kind = ESTIMATED if estimated else REALISED
        for metric, value in performance.metrics.items():
            # An undefined metric (one-class window) is NaN, not a stale number.
            shown = math.nan if value is None else value
            self.performance.labels(model, str(version), metric, kind).set(shown)

    def observe_segments(self, model: str, version: int, reports: dict[str, SegmentReport]) -> None:
        for column, report in reports.items():
            for metric, gap in report.gaps.items():
                self.segment_gap.labels(model, str(version), column, metric).set(gap.gap)

    def observe_alert(self, model: str, rule: str, firing: bool) -> None:
        self.alerts_firing.labels(model, rule).set(1.0 if firing else 0.0)

    def on_alert(self, alert: Alert) -> None:
        """An AlertManager subscriber: `manager.subscribe(gauges.on_alert)`."""
        self.observe_alert(alert.subject, alert.rule, alert.state == FIRING)

    def forget(self, model: str, version: int) -> None:
        """Drop every series of one model version (e.g. after it stops serving)."""
        v = str(version)
        for gauge in (self.p_value, self.score, self.detected, self.performance, self.segment_gap):
            for labels in list(gauge._metrics):  # prometheus_client keeps children by label tuple
                if labels[:2] == (model, v):
                    gauge.remove(*labels)


def _finite(value: float) -> float:
    return value if math.isfinite(value) else math.nan
