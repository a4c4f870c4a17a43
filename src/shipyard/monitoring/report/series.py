"""What the status table and the report show, computed from DataFrames and a DriftDetector.

    data = MonitorInput("fraud", detector, events, label="label", prediction="output.label",
                        score="output.proba", alerts=history.list(subject="fraud"))
    summary = summarise(data)         # latest drift per feature, performance, firing alerts
    timeline = over_time(data)        # drift p-values and performance per time bucket

The events may be the prediction log (`input.<name>` columns, `at`) or a plain feature table;
pure functions, no I/O, so the CLI, the web UI and tests share them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pandas as pd

from shipyard.core.errors import InvalidArgument
from shipyard.monitoring.alerts import FIRING, Alert
from shipyard.monitoring.detector import DriftDetector
from shipyard.monitoring.eventlog.columns import INPUT_PREFIX, OUTPUT_PREFIX
from shipyard.monitoring.performance import (
    Performance,
    classification_performance,
    regression_performance,
)
from shipyard.monitoring.performance_estimate import PerformanceEstimator
from shipyard.monitoring.result import DriftResult

MIN_BUCKET_ROWS = 50  # fewer rows per bucket make p-value curves noise
TASKS = ("classification", "regression")


@dataclass(frozen=True)
class MonitorInput:
    model: str
    detector: DriftDetector
    events: pd.DataFrame
    label: str | None = None  # ground-truth column (joined feedback)
    prediction: str | None = None
    score: str | None = None  # P(positive) for binary classifiers
    task: str = "classification"
    estimator: PerformanceEstimator | None = None
    alerts: list[Alert] = field(default_factory=list)
    buckets: int = 10

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise InvalidArgument(f"task must be classification or regression, got {self.task!r}")
        if not 1 <= self.buckets <= 200:
            raise InvalidArgument(f"buckets must be between 1 and 200, got {self.buckets}")
        needed = [c for c in (self.label, self.prediction, self.score) if c is not None]
        missing = [c for c in needed if c not in self.events.columns]
        if missing:
            raise InvalidArgument(f"events are missing columns: {', '.join(missing)}")
        if self.label is not None and self.prediction is None:
            raise InvalidArgument("a label column needs a prediction column to compare with")


@dataclass(frozen=True)
class Summary:
    model: str
    n_rows: int
    drift: DriftResult
    realised: Performance | None
    estimated: Performance | None
    firing: list[Alert]
    latency_p95_ms: float | None = None  # from the prediction log's `latency_ms`, when present


@dataclass(frozen=True)
class Bucket:
    start: datetime | None  # None when the events have no `at` column
    end: datetime | None
    n_rows: int
    drift: DriftResult
    realised: Performance | None
    estimated: Performance | None


def features(data: MonitorInput) -> pd.DataFrame:
    """The detector's features out of the events: prediction-log columns lose `input.`, and
    `output.<name>` stands for a reference column `<name>` (prediction drift)."""
    events = data.events
    profiled = data.detector.profiles
    renamed = {}
    for column in map(str, events.columns):
        for prefix in (INPUT_PREFIX, OUTPUT_PREFIX):
            plain = column.removeprefix(prefix)
            if column.startswith(prefix) and plain in profiled and plain not in events.columns:
                renamed[column] = plain
    frame = events.rename(columns=renamed) if renamed else events
    return frame[[c for c in frame.columns if c in profiled]]


def _performance(data: MonitorInput, part: pd.DataFrame) -> Performance | None:
    if data.label is None or data.prediction is None:
        return None
    if data.task == "regression":
        return regression_performance(part[data.label], part[data.prediction])
    scores = None if data.score is None else part[data.score]
    return classification_performance(part[data.label], part[data.prediction], scores)


def _estimated(data: MonitorInput, part: pd.DataFrame) -> Performance | None:
    if data.estimator is None or data.score is None:
        return None
    return data.estimator.estimate(part[data.score])


def _latest_alerts(alerts: list[Alert]) -> list[Alert]:
    latest: dict[str, Alert] = {}
    for alert in sorted(alerts, key=lambda a: a.at, reverse=True):
        latest.setdefault(alert.rule, alert)
    return [a for a in latest.values() if a.state == FIRING]


def summarise(data: MonitorInput) -> Summary:
    if len(data.events) == 0:
        raise InvalidArgument(f"no events for {data.model} in the window: nothing to check")
    drift = data.detector.check(features(data))
    return Summary(
        data.model, len(data.events), drift, _performance(data, data.events),
        _estimated(data, data.events), _latest_alerts(data.alerts), _latency_p95(data.events),
    )  # fmt: skip


def _latency_p95(events: pd.DataFrame) -> float | None:
    if "latency_ms" not in events.columns:
        return None
    latency = pd.to_numeric(events["latency_ms"], errors="coerce").dropna()
    return float(np.percentile(latency, 95)) if len(latency) else None


def over_time(data: MonitorInput) -> list[Bucket]:
    """Equal-count buckets in time order (each at least MIN_BUCKET_ROWS rows when possible)."""
    events = data.events
    if len(events) == 0:
        return []
    has_time = "at" in events.columns
    if has_time:
        events = events.assign(at=pd.to_datetime(events["at"], utc=True)).sort_values(
            "at", kind="stable"
        )
    count = max(1, min(data.buckets, len(events) // MIN_BUCKET_ROWS))
    bounds = np.linspace(0, len(events), count + 1).astype(int)
    ordered = dataclasses.replace(data, events=events)
    table = features(ordered)
    result = []
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        part = events.iloc[lo:hi]
        start = part["at"].iloc[0].to_pydatetime() if has_time else None
        end = part["at"].iloc[-1].to_pydatetime() if has_time else None
        drift = data.detector.check(table.iloc[lo:hi])
        bucket = Bucket(
            start, end, hi - lo, drift, _performance(data, part), _estimated(data, part)
        )
        result.append(bucket)
    return result
