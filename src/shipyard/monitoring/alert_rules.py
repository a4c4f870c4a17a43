"""What alert rules look at (an Observation of one window) and the rules themselves.

Each rule returns a Verdict with a message a person can act on: which feature or metric, what
moved and how sure (p-values, row counts), or None when the window lacks the rule's data.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from shipyard.core.errors import InvalidArgument
from shipyard.monitoring.performance import (
    CLASSIFICATION_METRICS,
    REGRESSION_METRICS,
    Performance,
)
from shipyard.monitoring.result import DriftResult
from shipyard.monitoring.segments import SegmentReport

WARNING = "warning"
CRITICAL = "critical"
SEVERITIES = (WARNING, CRITICAL)
MAX_REASONS = 3  # features named in one message; the rest are in details


@dataclass(frozen=True)
class Observation:
    """Everything known about one window of one model (or of one deployment's traffic to it:
    then `subject` is the deployment and `model` the model); fields left None are not judged."""

    subject: str
    at: datetime
    version: int | None = None
    model: str | None = None  # set when the subject is a deployment
    drift: DriftResult | None = None
    realised: Performance | None = None
    estimated: Performance | None = None
    latency_p95_ms: float | None = None
    error_rate: float | None = None
    segments: dict[str, SegmentReport] = field(default_factory=dict)  # column -> report

    @classmethod
    def of(
        cls,
        model: str,
        at: datetime,
        *,
        version: int | None,
        deployment: str | None = None,
        drift: DriftResult | None = None,
    ) -> Observation:
        """A window of `model` (or of its traffic through `deployment`, then the subject)."""
        if deployment is None:
            return cls(model, at, version=version, drift=drift)
        return cls(deployment, at, version=version, model=model, drift=drift)

    @property
    def label(self) -> str:
        version = "" if self.version is None else f" v{self.version}"
        if self.model is None or self.model == self.subject:
            return f"{self.subject}{version}"
        return f"{self.model}{version} through {self.subject}"


@dataclass(frozen=True)
class Verdict:
    bad: bool
    message: str
    details: dict[str, Any] = field(default_factory=dict)


class Rule(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def severity(self) -> str: ...

    def evaluate(self, observation: Observation) -> Verdict | None: ...


def _check_severity(severity: str) -> None:
    if severity not in SEVERITIES:
        raise InvalidArgument(f"severity must be one of {', '.join(SEVERITIES)}, got {severity!r}")


@dataclass(frozen=True)
class DriftRule:
    name: str = "drift"
    severity: str = WARNING

    def __post_init__(self) -> None:
        _check_severity(self.severity)

    def evaluate(self, obs: Observation) -> Verdict | None:
        result = obs.drift
        if result is None:
            return None
        tests = list(result.features.values())
        if result.multivariate is not None:
            tests.append(result.multivariate)
        drifted = sorted((t for t in tests if t.drift), key=lambda t: t.p_value)
        details = {
            "p_value": result.p_value,
            "alpha": result.alpha,
            "n_rows": result.n_rows,
            "features": {
                t.name: {"p_value": t.p_value, "p_adjusted": t.p_adjusted, "test": t.test,
                         "statistic": t.statistic, "summary": t.summary}
                for t in drifted
            },
        }  # fmt: skip
        if not result.drift:
            return Verdict(False, f"{obs.label}: no drift (p={result.p_value:.2g})", details)
        reasons = result.reasons()
        more = len(reasons) - MAX_REASONS
        text = "; ".join(reasons[:MAX_REASONS]) + (f"; and {more} more" if more > 0 else "")
        return Verdict(True, f"{obs.label} drifted on {result.n_rows} rows: {text}", details)


@dataclass(frozen=True)
class PerformanceRule:
    """Fires when `metric` is below `below`, or lower than `reference` by more than `max_drop`.
    `estimated=True` judges the label-free estimate; for error metrics (mae, rmse, log_loss)
    pass `higher_is_better=False` and the comparisons flip."""

    metric: str
    below: float | None = None
    reference: float | None = None
    max_drop: float | None = None
    estimated: bool = False
    higher_is_better: bool = True
    severity: str = CRITICAL
    name: str = ""

    def __post_init__(self) -> None:
        _check_severity(self.severity)
        if self.below is None and self.max_drop is None:
            raise InvalidArgument(f"performance rule on {self.metric}: give below or max_drop")
        if self.max_drop is not None and self.reference is None:
            raise InvalidArgument(f"performance rule on {self.metric}: max_drop needs reference")
        if not self.name:
            kind = "estimated" if self.estimated else "realised"
            object.__setattr__(self, "name", f"{kind} {self.metric}")

    def evaluate(self, obs: Observation) -> Verdict | None:
        perf = obs.estimated if self.estimated else obs.realised
        if perf is None:
            return None
        value = perf.value(self.metric)
        if value is None:
            return None
        sign = 1.0 if self.higher_is_better else -1.0
        problems = []
        if self.below is not None and sign * value < sign * self.below:
            problems.append(f"{'below' if sign > 0 else 'above'} {self.below:.4g}")
        drop = None if self.reference is None else sign * (self.reference - value)
        if drop is not None and self.max_drop is not None and drop > self.max_drop:
            problems.append(f"worse than the reference {self.reference:.4g} by {drop:.3g}")
        kind = "estimated" if self.estimated else "realised"
        rows = f"{perf.n_rows} {'scored' if self.estimated else 'labelled'} rows"
        status = " and ".join(problems) if problems else "within bounds"
        message = f"{obs.label}: {kind} {self.metric} {value:.4g} is {status} ({rows})"
        details = {"metric": self.metric, "value": value, "kind": kind, "n_rows": perf.n_rows,
                   "below": self.below, "reference": self.reference, "drop": drop}  # fmt: skip
        return Verdict(bool(problems), message, details)


@dataclass(frozen=True)
class LatencyRule:
    slo_p95_ms: float
    name: str = "latency p95"
    severity: str = WARNING

    def evaluate(self, obs: Observation) -> Verdict | None:
        if obs.latency_p95_ms is None:
            return None
        bad = obs.latency_p95_ms > self.slo_p95_ms
        word = "above" if bad else "within"
        message = f"{obs.label}: latency p95 {obs.latency_p95_ms:.1f} ms is {word} the SLO of {self.slo_p95_ms:g} ms"
        return Verdict(bad, message, {"p95_ms": obs.latency_p95_ms, "slo_ms": self.slo_p95_ms})


@dataclass(frozen=True)
class ErrorRateRule:
    max_rate: float
    name: str = "error rate"
    severity: str = CRITICAL

    def evaluate(self, obs: Observation) -> Verdict | None:
        if obs.error_rate is None:
            return None
        bad = obs.error_rate > self.max_rate
        word = "above" if bad else "within"
        message = f"{obs.label}: error rate {obs.error_rate:.2%} is {word} the limit of {self.max_rate:.2%}"
        return Verdict(bad, message, {"error_rate": obs.error_rate, "max_rate": self.max_rate})


@dataclass(frozen=True)
class SegmentGapRule:
    """Fires when `metric` differs between the best and worst value of `column` by > max_gap."""

    column: str
    metric: str
    max_gap: float
    severity: str = WARNING
    name: str = ""

    def __post_init__(self) -> None:
        _check_severity(self.severity)
        if not self.name:
            object.__setattr__(self, "name", f"segment gap {self.column} {self.metric}")

    def evaluate(self, obs: Observation) -> Verdict | None:
        report = obs.segments.get(self.column)
        gap = None if report is None else report.gaps.get(self.metric)
        if report is None or gap is None:
            return None
        bad = gap.gap > self.max_gap
        word = "above" if bad else "within"
        message = (
            f"{obs.label}: {self.metric} differs by {gap.gap:.3g} between {self.column}="
            f"{gap.best} ({gap.best_value:.3g}) and {self.column}={gap.worst} "
            f"({gap.worst_value:.3g}), {word} the limit of {self.max_gap:g}"
        )
        details = {"column": self.column, "metric": self.metric, "gap": gap.gap,
                   "best": gap.best, "worst": gap.worst, "max_gap": self.max_gap}  # fmt: skip
        return Verdict(bad, message, details)


LOWER_IS_BETTER = frozenset({"mae", "rmse", "log_loss"})
_SPEC = re.compile(r"^\s*([a-z0-9_]+)\s*([<>])\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?)\s*$")


def performance_rule(spec: str) -> PerformanceRule:
    """`accuracy<0.9` (fire when realised accuracy is below 0.9) or `rmse>2.5` (when RMSE is
    above 2.5): the operator points the way the metric gets worse."""
    found = _SPEC.match(spec)
    if found is None:
        raise InvalidArgument(
            f"performance alert {spec!r}: write METRIC<VALUE (accuracy<0.9) or METRIC>VALUE "
            "(rmse>2.5)"
        )
    metric, direction, text = found.groups()
    known = (*CLASSIFICATION_METRICS, *REGRESSION_METRICS)
    if metric not in known:
        raise InvalidArgument(
            f"performance alert {spec!r}: unknown metric; known: {', '.join(known)}"
        )
    lower_is_better = metric in LOWER_IS_BETTER
    if (direction == ">") != lower_is_better:
        worse = ">" if lower_is_better else "<"
        raise InvalidArgument(
            f"performance alert {spec!r}: {metric} gets worse as it "
            f"{'rises' if lower_is_better else 'falls'}; write {metric}{worse}{text}"
        )
    return PerformanceRule(metric, below=float(text), higher_is_better=not lower_is_better)
