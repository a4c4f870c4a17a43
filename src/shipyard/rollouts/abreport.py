"""A/B results: per-variant traffic, errors, latency and feedback of a deployment's current
revision, with confidence intervals and each variant's difference from the primary.

Rates carry Wilson score intervals (honest at small counts and at 0 or 100 %, where the
normal interval collapses); differences carry Newcombe's interval built from the two Wilson
intervals, and a two-sided p-value (Fisher's exact test when any expected cell count is under
5, else the pooled two-proportion z test). Latency quantiles are the upper edges of the
data planes' latency buckets (within a factor of about 1.4). Counts cover the current revision
only (each revision is its own split), from `since` when given.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from scipy import stats as sps

from shipyard.core.errors import InvalidArgument
from shipyard.rollouts import observations
from shipyard.rollouts.deployments import Deployments
from shipyard.rollouts.spec import Role, Variant
from shipyard.rollouts.stats import VariantWindow
from shipyard.storage.tables import utcnow

CONFIDENCE = 0.95
_Z = float(sps.norm.ppf(1 - (1 - CONFIDENCE) / 2))

Interval = tuple[float, float]


@dataclass(frozen=True, slots=True)
class Comparison:
    """One rate of a variant against the primary's: difference, its interval, p-value."""

    difference: float
    interval: Interval
    p_value: float

    def to_json(self) -> dict[str, Any]:
        return {"difference": self.difference, "ci": list(self.interval), "p_value": self.p_value}


@dataclass(frozen=True, slots=True)
class VariantReport:
    ref: str
    role: str  # primary, candidate or shadow
    weight: int
    requests: int
    errors: int
    error_rate: float | None
    error_rate_ci: Interval | None
    latency_p50_s: float | None
    latency_p95_s: float | None
    feedback: int
    accuracy: float | None
    accuracy_ci: Interval | None
    error_rate_vs_primary: Comparison | None
    accuracy_vs_primary: Comparison | None

    def to_json(self) -> dict[str, Any]:
        return {
            "ref": self.ref,
            "role": self.role,
            "weight": self.weight,
            "requests": self.requests,
            "errors": self.errors,
            "error_rate": self.error_rate,
            "error_rate_ci": _list(self.error_rate_ci),
            "latency_p50_s": self.latency_p50_s,
            "latency_p95_s": self.latency_p95_s,
            "feedback": self.feedback,
            "accuracy": self.accuracy,
            "accuracy_ci": _list(self.accuracy_ci),
            "error_rate_vs_primary": _json(self.error_rate_vs_primary),
            "accuracy_vs_primary": _json(self.accuracy_vs_primary),
        }


@dataclass(frozen=True, slots=True)
class AbReport:
    deployment: str
    revision: int
    strategy: str
    since: datetime | None
    generated_at: datetime
    confidence: float
    variants: tuple[VariantReport, ...]  # the primary first

    def to_json(self) -> dict[str, Any]:
        return {
            "deployment": self.deployment,
            "revision": self.revision,
            "strategy": self.strategy,
            "since": self.since.isoformat() if self.since is not None else None,
            "generated_at": self.generated_at.isoformat(),
            "confidence": self.confidence,
            "variants": [v.to_json() for v in self.variants],
        }


def ab_report(deployments: Deployments, name: str, *, since: datetime | None = None) -> AbReport:
    """The A/B report of deployment `name` (NotFound when there is none)."""
    if since is not None and (not isinstance(since, datetime) or since.tzinfo is None):
        raise InvalidArgument("since must be a timezone-aware datetime (e.g. ...Z or +00:00)")
    revision = deployments.get(name).revision
    observed = observations.observe(deployments.database, name, revision.number, since=since)
    spec = revision.spec
    primary = spec.primary
    base = observed.of(primary)
    rows = [_row(primary, Role.PRIMARY, base, None)]
    for variant in spec.variants:
        if variant is not primary:
            rows.append(_row(variant, Role.CANDIDATE, observed.of(variant), base))
    if spec.shadow is not None:
        rows.append(_row(spec.shadow, Role.SHADOW, observed.shadow_of(spec.shadow), base))
    return AbReport(
        deployment=name,
        revision=revision.number,
        strategy=spec.strategy.value,
        since=since,
        generated_at=utcnow(),
        confidence=CONFIDENCE,
        variants=tuple(rows),
    )


def _row(
    variant: Variant, role: Role, window: VariantWindow, primary: VariantWindow | None
) -> VariantReport:
    n, errors = window.requests, window.errors
    labelled, correct = window.feedback_total, window.feedback_correct
    return VariantReport(
        ref=variant.ref,
        role=role.value,
        weight=variant.weight if role is not Role.SHADOW else 0,
        requests=n,
        errors=errors,
        error_rate=errors / n if n else None,
        error_rate_ci=wilson(errors, n),
        latency_p50_s=_finite(window.latency_quantile(0.5)),
        latency_p95_s=_finite(window.latency_quantile(0.95)),
        feedback=labelled,
        accuracy=correct / labelled if labelled else None,
        accuracy_ci=wilson(correct, labelled),
        error_rate_vs_primary=(
            compare(errors, n, primary.errors, primary.requests) if primary is not None else None
        ),
        accuracy_vs_primary=(
            compare(correct, labelled, primary.feedback_correct, primary.feedback_total)
            if primary is not None
            else None
        ),
    )


def wilson(successes: int, n: int, z: float = _Z) -> Interval | None:
    """The Wilson score interval of successes/n (None without data)."""
    if n <= 0:
        return None
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


def compare(x1: int, n1: int, x0: int, n0: int) -> Comparison | None:
    """x1/n1 - x0/n0 with Newcombe's hybrid score interval and a two-sided p-value."""
    w1, w0 = wilson(x1, n1), wilson(x0, n0)
    if w1 is None or w0 is None:
        return None
    p1, p0 = x1 / n1, x0 / n0
    d = p1 - p0
    lower = d - math.sqrt((p1 - w1[0]) ** 2 + (w0[1] - p0) ** 2)
    upper = d + math.sqrt((w1[1] - p1) ** 2 + (p0 - w0[0]) ** 2)
    return Comparison(d, (lower, upper), _two_sided_p(x1, n1, x0, n0))


def _two_sided_p(x1: int, n1: int, x0: int, n0: int) -> float:
    pooled = (x1 + x0) / (n1 + n0)
    if pooled in (0.0, 1.0):
        return 1.0  # all successes or all failures on both sides: no evidence of a difference
    expected = min(n * r for n in (n1, n0) for r in (pooled, 1 - pooled))
    if expected < 5:
        _, p_value = sps.fisher_exact([[x1, n1 - x1], [x0, n0 - x0]])
        return float(p_value)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n0))
    return float(2 * sps.norm.sf(abs(x1 / n1 - x0 / n0) / se))


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _list(interval: Interval | None) -> list[float] | None:
    return list(interval) if interval is not None else None


def _json(comparison: Comparison | None) -> dict[str, Any] | None:
    return comparison.to_json() if comparison is not None else None
