"""Response bodies of the monitoring endpoints (transports/api/monitoring.py) and their
converters from rollouts.traffic, monitoring.drift_view and monitoring.alerts."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from shipyard.monitoring.alerts import Alert
from shipyard.monitoring.drift_view import DriftView, FeatureView
from shipyard.monitoring.result import FeatureDrift
from shipyard.rollouts.traffic import Traffic, VersionTraffic

LATENCY_NOTE = (
    "Approximated from log-spaced latency buckets (~9.4 % wide, 50 µs to 60 s): the upper edge "
    "of the bucket holding the percentile, so it overstates by less than one bucket. Null when "
    "the time bucket had no requests or the percentile is above 60 s."
)


def finite(value: float | None) -> float | None:
    """NaN and infinities are not JSON: they become null."""
    return value if value is not None and math.isfinite(value) else None


class TrafficSeriesOut(BaseModel):
    model: str
    version: int
    ref: str
    shadow: bool = Field(description="A shadow copy: requests answered and discarded.")
    requests: list[int] = Field(description="Requests per time bucket.")
    errors: list[int] = Field(description="Failed requests per time bucket.")
    error_rate: list[float | None] = Field(description="errors / requests; null: no requests.")
    latency_p50_s: list[float | None] = Field(description=LATENCY_NOTE)
    latency_p95_s: list[float | None] = Field(description=LATENCY_NOTE)
    latency_p99_s: list[float | None] = Field(description=LATENCY_NOTE)

    @classmethod
    def of(cls, s: VersionTraffic) -> TrafficSeriesOut:
        return cls(
            model=s.model, version=s.version, ref=s.ref, shadow=s.shadow, requests=s.requests,
            errors=s.errors, error_rate=s.error_rate, latency_p50_s=s.latency_s[0.5],
            latency_p95_s=s.latency_s[0.95], latency_p99_s=s.latency_s[0.99],
        )  # fmt: skip


class TrafficOut(BaseModel):
    """What the data planes recorded for a deployment, per model version and time bucket
    (every revision of the window, summed over data planes). Bucket edges are multiples of
    `step_s` since the epoch; a data plane flushes about every second, so an edge may be off
    by that much."""

    deployment: str
    start: datetime = Field(description="Start of the first bucket.")
    end: datetime = Field(description="When the series was read (end of the last bucket).")
    step_s: int
    buckets: list[datetime] = Field(description="Start of each time bucket.")
    series: list[TrafficSeriesOut] = Field(description="Live versions first, then shadows.")

    @classmethod
    def of(cls, t: Traffic) -> TrafficOut:
        return cls(
            deployment=t.deployment, start=t.start, end=t.end, step_s=t.step_s,
            buckets=t.buckets, series=[TrafficSeriesOut.of(s) for s in t.series],
        )  # fmt: skip


class AlertOut(BaseModel):
    rule: str
    subject: str = Field(description="The model (or deployment) the alert is about.")
    state: str = Field(description="firing or resolved.")
    severity: str
    message: str
    at: datetime
    details: dict[str, Any]
    notified: bool = Field(description="False when the rule's budget suppressed the notice.")

    @classmethod
    def of(cls, a: Alert) -> AlertOut:
        return cls(
            rule=a.rule, subject=a.subject, state=a.state, severity=a.severity,
            message=a.message, at=a.at, details=a.details, notified=a.notified,
        )  # fmt: skip


class HistogramOut(BaseModel):
    """Counts per bin of the reference data and of the live (logged) rows on the same bins:
    numeric features on `edges` (bins + 1 values; values beyond them are counted in the outer
    bins), categorical ones per `categories` (the reference's most frequent, new ones, then
    "(other)"). Missing values are in neither."""

    reference: list[int]
    live: list[int]
    edges: list[float]
    categories: list[str]


class FeatureDriftOut(BaseModel):
    name: str
    kind: str = Field(description="numeric, categorical or multivariate.")
    test: str
    statistic: float | None
    p_value: float | None = Field(description="The test's own p-value.")
    p_adjusted: float | None = Field(description="Holm-adjusted over all features.")
    drifted: bool = Field(description="p_adjusted < alpha.")
    summary: str = Field(description="What moved, in words.")
    n_reference: int
    n_live: int
    histogram: HistogramOut | None = Field(description="Null for the multivariate test.")

    @classmethod
    def of(cls, t: FeatureDrift, view: FeatureView | None = None) -> FeatureDriftOut:
        histogram = None
        if view is not None:
            h = view.histogram
            histogram = HistogramOut(
                reference=h.reference, live=h.live, edges=h.edges, categories=h.categories
            )
        return cls(
            name=t.name, kind=t.kind, test=t.test, statistic=finite(t.statistic),
            p_value=finite(t.p_value), p_adjusted=finite(t.p_adjusted), drifted=t.drift,
            summary=t.summary, n_reference=t.n_reference, n_live=t.n_window,
            histogram=histogram,
        )  # fmt: skip


class DriftOut(BaseModel):
    """Logged predictions of one model version over a window against the reference data stored
    when the version was registered. One test per feature (numeric: Anderson-Darling on the
    reference's quantile cells; categorical: chi-square), Holm-corrected, plus a joint test of
    the numeric features."""

    model: str
    version: int
    ref: str
    since: datetime
    until: datetime
    deployment: str | None
    drift: bool
    p_value: float | None = Field(description="The smallest Holm-adjusted p-value.")
    alpha: float
    n_reference: int
    n_live: int = Field(description="Logged rows compared (a request of n rows counts n).")
    features: list[FeatureDriftOut]
    multivariate: FeatureDriftOut | None
    not_logged: list[str] = Field(description="Reference columns the log does not hold.")
    skipped: dict[str, str] = Field(description="Features not tested, with the reason.")

    @classmethod
    def of(
        cls, view: DriftView, *, model: str, version: int, since: datetime, until: datetime,
        deployment: str | None,
    ) -> DriftOut:  # fmt: skip
        mv = view.multivariate
        return cls(
            model=model, version=version, ref=f"{model}:{version}", since=since, until=until,
            deployment=deployment, drift=view.drift, p_value=finite(view.p_value),
            alpha=view.alpha, n_reference=view.n_reference, n_live=view.n_live,
            features=[FeatureDriftOut.of(f.test, f) for f in view.features],
            multivariate=FeatureDriftOut.of(mv) if mv is not None else None,
            not_logged=view.not_logged, skipped=view.skipped,
        )  # fmt: skip
