"""Analysis: does a rollout's candidate behave like its baseline over one window? (pure)

Each gate of the Policy is a one-sided statistical test whose alternative is "the candidate is
worse by more than the policy allows"; the gate FAILs when that test rejects at the gate's
alpha. Not rejecting is only a PASS with enough data: below the minimum sample a gate is
INCONCLUSIVE, never PASS, so a handful of lucky requests cannot promote a candidate. The
feedback and shadow gates are skipped (neither pass nor block) until their data exists.

Every statistic and p-value goes into `Verdict.numbers` (JSON-ready: non-finite values become
None) so the ledger shows why each window ended as it did.
"""

from __future__ import annotations

import enum
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from scipy import stats as sps

from shipyard.rollouts.policy import (
    ErrorRateGate,
    FeedbackGate,
    LatencyGate,
    Policy,
    PredictionGate,
    ShadowGate,
)
from shipyard.rollouts.stats import MAX_PREDICTIONS, VariantWindow

# At most this many distinct prediction values are compared as categories (chi-square);
# more are treated as continuous (two-sample Kolmogorov-Smirnov).
MAX_CATEGORIES = 20


class Outcome(enum.StrEnum):
    PASS = "pass"  # noqa: S105 (a verdict, not a password)
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"
    SKIPPED = "skipped"  # a gate without its data yet (feedback, shadow); never blocks


@dataclass(frozen=True, slots=True)
class GateResult:
    gate: str
    outcome: Outcome
    reason: str
    numbers: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Verdict:
    outcome: Outcome  # PASS, FAIL or INCONCLUSIVE
    reason: str
    numbers: dict[str, Any]  # gate name -> its statistics, p-value and outcome
    gates: tuple[GateResult, ...]


def analyse(
    policy: Policy,
    baseline: VariantWindow,
    candidate: VariantWindow,
    *,
    shadow: VariantWindow | None = None,
) -> Verdict:
    """Judge one window: FAIL if any gate fails, else INCONCLUSIVE if any gate (or the
    window's traffic) lacks data, else PASS. The reason names each failing (or inconclusive)
    gate with its numbers."""
    gates = policy.gates
    results: list[GateResult] = []
    if gates.error_rate is not None:
        results.append(error_rate(gates.error_rate, baseline, candidate, policy.min_requests))
    if gates.latency is not None:
        results.append(latency(gates.latency, baseline, candidate, policy.min_requests))
    if gates.predictions is not None:
        results.append(predictions(gates.predictions, baseline, candidate, policy.min_requests))
    if gates.shadow_agreement is not None:
        results.append(shadow_agreement(gates.shadow_agreement, shadow, policy.min_requests))
    if gates.feedback is not None:
        results.append(feedback(gates.feedback, baseline, candidate))
    numbers = {r.gate: {"outcome": r.outcome.value, **_finite(r.numbers)} for r in results}
    numbers["requests"] = {"baseline": baseline.requests, "candidate": candidate.requests}
    for outcome in (Outcome.FAIL, Outcome.INCONCLUSIVE):
        chosen = [r for r in results if r.outcome is outcome]
        if chosen:
            reason = "; ".join(f"{r.gate}: {r.reason}" for r in chosen)
            return Verdict(outcome, reason, numbers, tuple(results))
    short = _short("requests", policy.min_requests, baseline.requests, candidate.requests)
    if short is not None:  # no traffic gate configured: still never a PASS on a handful
        return Verdict(Outcome.INCONCLUSIVE, f"requests: {short.reason}", numbers, tuple(results))
    judged = [
        f"{r.gate} p={_p(r.numbers['p_value'])}" for r in results if r.outcome is Outcome.PASS
    ]
    reason = "all gates passed" + (f" ({', '.join(judged)})" if judged else "")
    return Verdict(Outcome.PASS, reason, numbers, tuple(results))


# -- gates -----------------------------------------------------------------------------------


def error_rate(
    gate: ErrorRateGate, baseline: VariantWindow, candidate: VariantWindow, min_requests: int
) -> GateResult:
    short = _short("error_rate", min_requests, baseline.requests, candidate.requests)
    if short is not None:
        return short
    test = excess(
        candidate.errors, candidate.requests, baseline.errors, baseline.requests, gate.max_increase
    )
    numbers = {
        "baseline": baseline.errors / baseline.requests,
        "candidate": candidate.errors / candidate.requests,
        "max_increase": gate.max_increase,
        "alpha": gate.alpha,
        **test,
    }
    text = (
        f"candidate {_pct(numbers['candidate'])} vs baseline {_pct(numbers['baseline'])} errors "
        f"(allowed +{_pp(gate.max_increase)}, p={_p(test['p_value'])})"
    )
    return _judge("error_rate", test["p_value"], gate.alpha, text, numbers)


def latency(
    gate: LatencyGate, baseline: VariantWindow, candidate: VariantWindow, min_requests: int
) -> GateResult:
    base_n, cand_n = sum(baseline.latency), sum(candidate.latency)
    short = _short("latency", min_requests, base_n, cand_n)
    if short is not None:
        return short
    # Both variants are counted against the baseline's q quantile, and the two shares are
    # compared by a two-proportion test. In a short window that quantile is noisy (the p90 of
    # 40 requests is their 4th slowest); the test's baseline term carries that noise, where a
    # binomial test of the candidate against a fixed 1 - q took the estimate as exact.
    # Slower by less than the tolerance is not slower (both variants judged by one threshold).
    threshold = baseline.latency_quantile(gate.quantile) + gate.tolerance_ms / 1000
    base_slower, cand_slower = baseline.slower_than(threshold), candidate.slower_than(threshold)
    margin = (gate.max_ratio - 1) * (1 - gate.quantile)
    test = excess(cand_slower, cand_n, base_slower, base_n, margin)
    numbers = {
        "quantile": gate.quantile,
        "baseline_quantile_s": baseline.latency_quantile(gate.quantile),
        "tolerance_s": gate.tolerance_ms / 1000,
        "threshold_s": threshold,
        "candidate_quantile_s": candidate.latency_quantile(gate.quantile),
        "baseline_slower": base_slower / base_n,
        "candidate_slower": cand_slower / cand_n,
        "max_increase": margin,
        "alpha": gate.alpha,
        **test,
    }
    text = (
        f"{_pct(cand_slower / cand_n)} of candidate vs {_pct(base_slower / base_n)} of baseline "
        f"requests slower than the baseline's p{gate.quantile * 100:g} + {gate.tolerance_ms:g} ms "
        f"({_ms(threshold)}), allowed +{_pp(margin)} (p={_p(test['p_value'])})"
    )
    return _judge("latency", test["p_value"], gate.alpha, text, numbers)


def predictions(
    gate: PredictionGate, baseline: VariantWindow, candidate: VariantWindow, min_requests: int
) -> GateResult:
    # The data planes keep a sample of at most MAX_PREDICTIONS per flush, so the minimum
    # sample is capped there: a short window with one flush can still conclude.
    needed = min(min_requests, MAX_PREDICTIONS)
    base, cand = baseline.predictions, candidate.predictions
    short = _short("predictions", needed, len(base), len(cand))
    if short is not None:
        return short
    test = distribution_test(base, cand)
    numbers = {"alpha": gate.alpha, "samples": [len(base), len(cand)], **test}
    text = (
        f"candidate predictions differ from the baseline's ({test['test']} statistic "
        f"{test['statistic']:.3g}, p={_p(test['p_value'])})"
    )
    return _judge("predictions", test["p_value"], gate.alpha, text, numbers)


def shadow_agreement(
    gate: ShadowGate, shadow: VariantWindow | None, min_requests: int
) -> GateResult:
    if shadow is None:
        return GateResult("shadow_agreement", Outcome.SKIPPED, "no shadow in this revision")
    short = _short("shadow_agreement", min_requests, shadow.shadow_total)
    if short is not None:
        return short
    agree, total = shadow.shadow_agree, shadow.shadow_total
    p_value = float(sps.binomtest(agree, total, gate.min_rate, alternative="less").pvalue)
    numbers = {
        "agreement": agree / total,
        "compared": total,
        "min_rate": gate.min_rate,
        "alpha": gate.alpha,
        "test": "binomial",
        "p_value": p_value,
    }
    text = (
        f"shadow agrees with the primary on {_pct(agree / total)} of {total} requests, "
        f"required {_pct(gate.min_rate)} (p={_p(p_value)})"
    )
    return _judge("shadow_agreement", p_value, gate.alpha, text, numbers)


def feedback(gate: FeedbackGate, baseline: VariantWindow, candidate: VariantWindow) -> GateResult:
    have = min(baseline.feedback_total, candidate.feedback_total)
    if have < gate.min_samples:
        return GateResult(
            "feedback",
            Outcome.SKIPPED,
            f"{have} of {gate.min_samples} labelled predictions needed from each variant",
            {
                "baseline_labelled": baseline.feedback_total,
                "candidate_labelled": candidate.feedback_total,
            },
        )
    # A drop in accuracy is an excess in the error (wrong answer) rate.
    base_wrong = baseline.feedback_total - baseline.feedback_correct
    cand_wrong = candidate.feedback_total - candidate.feedback_correct
    test = excess(
        cand_wrong, candidate.feedback_total, base_wrong, baseline.feedback_total, gate.max_drop
    )
    numbers = {
        "baseline": baseline.feedback_correct / baseline.feedback_total,
        "candidate": candidate.feedback_correct / candidate.feedback_total,
        "labelled": [baseline.feedback_total, candidate.feedback_total],
        "max_drop": gate.max_drop,
        "alpha": gate.alpha,
        **test,
    }
    text = (
        f"candidate accuracy {_pct(numbers['candidate'])} vs baseline "
        f"{_pct(numbers['baseline'])} (allowed -{_pp(gate.max_drop)}, p={_p(test['p_value'])})"
    )
    return _judge("feedback", test["p_value"], gate.alpha, text, numbers)


# -- tests -----------------------------------------------------------------------------------


def excess(x1: int, n1: int, x0: int, n0: int, margin: float) -> dict[str, Any]:
    """One-sided test of "rate 1 > rate 0 + margin" for x1/n1 against x0/n0.

    With no margin, Fisher's exact test (valid at any count). With one, a z test on the
    Agresti-Caffo adjusted proportions (one success and one failure added to each group),
    which keeps its level at small counts and at rates of 0 where the plain Wald test breaks.
    """
    if margin <= 0:
        table = [[x1, n1 - x1], [x0, n0 - x0]]
        _, p_value = sps.fisher_exact(table, alternative="greater")
        return {"test": "fisher exact", "p_value": float(p_value)}
    p1, p0 = (x1 + 1) / (n1 + 2), (x0 + 1) / (n0 + 2)
    se = math.sqrt(p1 * (1 - p1) / (n1 + 2) + p0 * (1 - p0) / (n0 + 2))
    z = (p1 - p0 - margin) / se
    return {"test": "agresti-caffo z", "statistic": z, "p_value": float(sps.norm.sf(z))}


def distribution_test(base: Sequence[float], cand: Sequence[float]) -> dict[str, Any]:
    """Two-sample test that both samples come from one distribution: chi-square on the
    counts when there are few distinct values (class labels), else Kolmogorov-Smirnov."""
    values = set(base) | set(cand)
    if len(values) <= MAX_CATEGORIES:
        if len(values) == 1:
            return {"test": "chi-square", "statistic": 0.0, "p_value": 1.0, "categories": 1}
        keys = sorted(values)
        b, c = Counter(base), Counter(cand)
        table = [[b[k] for k in keys], [c[k] for k in keys]]
        result = sps.chi2_contingency(table, correction=False)
        return {
            "test": "chi-square",
            "statistic": float(result.statistic),
            "p_value": float(result.pvalue),
            "categories": len(keys),
        }
    result = sps.ks_2samp(base, cand)
    statistic, p_value = float(result.statistic), float(result.pvalue)
    return {"test": "kolmogorov-smirnov", "statistic": statistic, "p_value": p_value}


# -- shared pieces ---------------------------------------------------------------------------


def _short(gate: str, needed: int, *have: int) -> GateResult | None:
    if min(have) >= needed:
        return None
    names = ("baseline", "candidate") if len(have) == 2 else ("shadow",)
    shown = ", ".join(f"{name} {n}" for name, n in zip(names, have, strict=True))
    return GateResult(
        gate,
        Outcome.INCONCLUSIVE,
        f"too few samples ({shown}; {needed} needed from each)",
        {"samples": list(have), "needed": needed},
    )


def _judge(
    gate: str, p_value: float, alpha: float, text: str, numbers: dict[str, Any]
) -> GateResult:
    outcome = Outcome.FAIL if p_value < alpha else Outcome.PASS
    return GateResult(gate, outcome, text, numbers)


def _finite(numbers: dict[str, Any]) -> dict[str, Any]:
    """JSON (and PostgreSQL JSONB) has no inf or NaN: such values are written as None."""
    out: dict[str, Any] = {}
    for key, value in numbers.items():
        if isinstance(value, float):
            out[key] = float(f"{value:.6g}") if math.isfinite(value) else None
        else:
            out[key] = value
    return out


def _p(value: object) -> str:
    return f"{value:.2g}" if isinstance(value, float) else "n/a"


def _pct(value: float) -> str:
    return f"{value * 100:.2f}%"


def _pp(value: float) -> str:
    return f"{value * 100:.2f} pp"


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.3g} ms" if math.isfinite(seconds) else "no data"
