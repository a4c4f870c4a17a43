"""Performance per segment (region, device, a protected attribute) and the gap between segments.

    reports = segment_performance(frame, ["region", "gender"], label="label",
                                  prediction="output.label", score="output.proba")
    reports["gender"].gaps["recall"].gap      # best minus worst segment: bias as a number

Segments smaller than `min_rows` get metrics but no say in the gap (a 5-row segment's accuracy
is noise); beyond `max_segments` values the rarest are pooled as "(other)" so huge cardinality
costs bounded work.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from shipyard.core.errors import InvalidArgument
from shipyard.monitoring.performance import (
    Performance,
    classification_performance,
    regression_performance,
)

OTHER = "(other)"
MISSING = "(missing)"
DEFAULT_MIN_ROWS = 30
DEFAULT_MAX_SEGMENTS = 50
# Metrics where lower is better: the "best" segment is the one with the smallest value.
LOWER_IS_BETTER = frozenset({"log_loss", "mae", "rmse"})


@dataclass(frozen=True)
class Gap:
    gap: float  # |best - worst|
    best: str
    best_value: float
    worst: str
    worst_value: float


@dataclass(frozen=True)
class SegmentReport:
    column: str
    performance: dict[str, Performance]  # segment value -> metrics
    gaps: dict[str, Gap]  # metric -> gap among segments with >= min_rows labelled rows

    def largest_gap(self) -> tuple[str, Gap] | None:
        if not self.gaps:
            return None
        return max(self.gaps.items(), key=lambda item: item[1].gap)


def segment_performance(
    frame: pd.DataFrame,
    columns: Sequence[str],
    *,
    label: str,
    prediction: str,
    score: str | None = None,
    task: str = "classification",
    positive: object = 1,
    min_rows: int = DEFAULT_MIN_ROWS,
    max_segments: int = DEFAULT_MAX_SEGMENTS,
) -> dict[str, SegmentReport]:
    if task not in ("classification", "regression"):
        raise InvalidArgument(f"task must be classification or regression, got {task!r}")
    if min_rows < 1 or max_segments < 1:
        raise InvalidArgument("min_rows and max_segments must be at least 1")
    needed = [*columns, label, prediction, *([score] if score else [])]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise InvalidArgument(f"window is missing columns: {', '.join(missing)}")
    reports = {}
    for column in columns:
        keys = _segment_keys(frame[column], max_segments)
        performance: dict[str, Performance] = {}
        for key, part in frame.groupby(keys, sort=True):
            performance[str(key)] = _metrics(part, label, prediction, score, task, positive)
        reports[column] = SegmentReport(column, performance, _gaps(performance, min_rows))
    return reports


def _segment_keys(values: pd.Series, max_segments: int) -> pd.Series:
    keys = values.astype("string").fillna(MISSING)
    counts = keys.value_counts()
    if len(counts) > max_segments:
        kept = set(counts.index[: max_segments - 1])
        keys = keys.where(keys.isin(kept), OTHER)
    return keys


def _metrics(
    part: pd.DataFrame, label: str, prediction: str, score: str | None, task: str, positive: object
) -> Performance:
    if task == "regression":
        return regression_performance(part[label], part[prediction])
    scores = None if score is None else part[score]
    return classification_performance(part[label], part[prediction], scores, positive=positive)


def _gaps(performance: dict[str, Performance], min_rows: int) -> dict[str, Gap]:
    gaps = {}
    eligible = {k: p for k, p in performance.items() if p.n_rows >= min_rows}
    metrics = {name for p in eligible.values() for name in p.metrics}
    for metric in sorted(metrics):
        values = {k: p.metrics[metric] for k, p in eligible.items()}
        known = {k: v for k, v in values.items() if v is not None}
        if len(known) < 2:
            continue
        ordered = sorted(
            known.items(), key=lambda item: item[1], reverse=metric not in LOWER_IS_BETTER
        )
        (best, best_value), (worst, worst_value) = ordered[0], ordered[-1]
        gaps[metric] = Gap(abs(best_value - worst_value), best, best_value, worst, worst_value)
    return gaps
