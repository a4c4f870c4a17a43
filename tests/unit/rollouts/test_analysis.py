"""Rollout analysis on simulated windows: healthy candidates pass, broken ones fail, and small
samples never pass (pure; numpy Generators with fixed seeds, so every run draws the same)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest

from shipyard.rollouts.analysis import Outcome, Verdict, analyse, distribution_test, excess
from shipyard.rollouts.policy import Policy, parse_policy
from shipyard.rollouts.stats import (
    BUCKETS,
    LATENCY_EDGES_S,
    LEGACY_BUCKETS,
    VariantWindow,
    latency_counts,
)

RUNS = 200
ALL_GATES = parse_policy(
    {
        "min_requests": 200,
        "gates": {
            "error_rate": {"max_increase": 0.01},
            "latency": {"quantile": 0.95, "max_ratio": 1.25},
            "predictions": {"alpha": 0.001},
            "shadow_agreement": {"min_rate": 0.95},
            "feedback": {"max_drop": 0.05, "min_samples": 50},
        },
    }
)


@dataclass(frozen=True)
class Behaviour:
    """How one variant behaves: what a data plane would count over a window."""

    error_rate: float = 0.01
    median_s: float = 0.010
    prediction_shift: float = 0.0
    accuracy: float = 0.90
    classes: bool = False  # predictions are labels 0/1 instead of scores
    positive_rate: float = 0.3
    agreement: float = 0.99


def draw(rng: np.random.Generator, n: int, b: Behaviour, *, labelled: float = 0.4) -> VariantWindow:
    window = VariantWindow(requests=n, errors=int(rng.binomial(n, b.error_rate)))
    seconds = rng.lognormal(np.log(b.median_s), 0.4, n)
    buckets = np.searchsorted(np.asarray(LATENCY_EDGES_S), seconds, side="left")
    window.latency = [int(c) for c in np.bincount(buckets, minlength=BUCKETS)]
    sample = min(n, 512)
    if b.classes:
        window.predictions = [float(v) for v in rng.binomial(1, b.positive_rate, sample)]
    else:
        window.predictions = [float(v) for v in rng.normal(b.prediction_shift, 1.0, sample)]
    window.feedback_total = int(n * labelled)
    window.feedback_correct = int(rng.binomial(window.feedback_total, b.accuracy))
    window.shadow_total = n
    window.shadow_agree = int(rng.binomial(n, b.agreement))
    return window


def simulate(
    candidate: Behaviour,
    *,
    seed: int,
    policy: Policy = ALL_GATES,
    baseline: Behaviour = Behaviour(),
    sizes: tuple[int, int] = (2000, 500),
) -> list[Verdict]:
    rng = np.random.default_rng(seed)
    verdicts = []
    for _ in range(RUNS):
        base = draw(rng, sizes[0], baseline)
        cand = draw(rng, sizes[1], candidate)
        verdicts.append(analyse(policy, base, cand, shadow=cand))
    return verdicts


def share(verdicts: list[Verdict], test: Callable[[Verdict], bool]) -> float:
    return sum(1 for v in verdicts if test(v)) / len(verdicts)


def failed_on(gate: str) -> Callable[[Verdict], bool]:
    return lambda v: v.outcome is Outcome.FAIL and v.numbers[gate]["outcome"] == "fail"


def test_a_healthy_candidate_passes_at_least_95_percent_of_windows() -> None:
    verdicts = simulate(Behaviour(), seed=1)
    assert share(verdicts, lambda v: v.outcome is Outcome.PASS) >= 0.95
    passed = next(v for v in verdicts if v.outcome is Outcome.PASS)
    assert passed.reason.startswith("all gates passed (error_rate p=")
    for gate in ("error_rate", "latency", "predictions", "shadow_agreement", "feedback"):
        assert passed.numbers[gate]["outcome"] == "pass"
        assert 0 <= passed.numbers[gate]["p_value"] <= 1


def test_a_healthy_classifier_passes_too() -> None:
    verdicts = simulate(Behaviour(classes=True), seed=2, baseline=Behaviour(classes=True))
    assert share(verdicts, lambda v: v.outcome is Outcome.PASS) >= 0.95
    assert verdicts[0].numbers["predictions"]["test"] == "chi-square"


@pytest.mark.parametrize(
    ("candidate", "baseline", "gate", "words"),
    [
        (Behaviour(error_rate=0.06), Behaviour(), "error_rate", "errors (allowed +1.00 pp"),
        (
            Behaviour(median_s=0.020),
            Behaviour(),
            "latency",
            "of baseline requests slower than the baseline's p95",
        ),
        # 25 % slower: the earlier 43 %-wide buckets failed 28 % of such windows, these ~100 %.
        (
            Behaviour(median_s=0.0125),
            Behaviour(),
            "latency",
            "of baseline requests slower than the baseline's p95",
        ),
        (Behaviour(prediction_shift=0.5), Behaviour(), "predictions", "kolmogorov-smirnov"),
        (
            Behaviour(classes=True, positive_rate=0.5),
            Behaviour(classes=True),
            "predictions",
            "chi-square",
        ),
        (Behaviour(accuracy=0.70), Behaviour(), "feedback", "candidate accuracy"),
        (Behaviour(agreement=0.90), Behaviour(), "shadow_agreement", "required 95.00%"),
    ],
    ids=[
        "errors+5pp",
        "latency-2x",
        "latency-1.25x",
        "predictions-shifted",
        "classes-shifted",
        "accuracy-20pp",
        "shadow-disagrees",
    ],  # fmt: skip
)
def test_a_broken_candidate_fails_at_least_90_percent_of_windows(
    candidate: Behaviour, baseline: Behaviour, gate: str, words: str
) -> None:
    verdicts = simulate(candidate, seed=3, baseline=baseline)
    assert share(verdicts, failed_on(gate)) >= 0.90
    failed = next(v for v in verdicts if failed_on(gate)(v))
    assert f"{gate}: " in failed.reason and words in failed.reason
    assert failed.numbers[gate]["p_value"] < failed.numbers[gate]["alpha"]


def test_each_gate_reports_only_its_own_failure() -> None:
    """A candidate broken one way fails that gate and (nearly always) passes the others."""
    verdicts = simulate(Behaviour(error_rate=0.06), seed=4)
    assert share(verdicts, lambda v: v.numbers["latency"]["outcome"] == "pass") >= 0.95
    assert share(verdicts, lambda v: v.numbers["feedback"]["outcome"] == "pass") >= 0.95


@pytest.mark.parametrize("sizes", [(2000, 30), (30, 2000), (150, 150)])
def test_tiny_samples_are_inconclusive_never_pass(sizes: tuple[int, int]) -> None:
    perfect = Behaviour(error_rate=0.0, agreement=1.0, accuracy=1.0)
    verdicts = simulate(perfect, seed=5, sizes=sizes)
    assert all(v.outcome is Outcome.INCONCLUSIVE for v in verdicts)
    reason = verdicts[0].reason
    assert reason.startswith("error_rate: too few samples") and "200 needed from each" in reason
    assert verdicts[0].numbers["error_rate"]["samples"] == list(sizes)


def test_a_tiny_but_terrible_candidate_is_not_failed_on_noise() -> None:
    """Below the minimum sample even 100% errors is inconclusive, not a verdict."""
    base = draw(np.random.default_rng(6), 2000, Behaviour())
    cand = draw(np.random.default_rng(7), 20, Behaviour(error_rate=1.0))
    verdict = analyse(ALL_GATES, base, cand)
    assert verdict.outcome is Outcome.INCONCLUSIVE
    assert verdict.numbers["error_rate"]["outcome"] == "inconclusive"


def test_feedback_is_skipped_until_both_variants_have_min_samples() -> None:
    rng = np.random.default_rng(8)
    base = draw(rng, 2000, Behaviour(), labelled=0.4)
    cand = draw(rng, 500, Behaviour(accuracy=0.2), labelled=40 / 500)  # 40 < 50 labels
    verdict = analyse(ALL_GATES, base, cand, shadow=cand)
    assert verdict.outcome is Outcome.PASS  # skipped gates do not block
    assert verdict.numbers["feedback"]["outcome"] == "skipped"
    feedback = next(g for g in verdict.gates if g.gate == "feedback")
    assert feedback.reason == "40 of 50 labelled predictions needed from each variant"
    assert feedback.numbers["candidate_labelled"] == 40
    assert feedback.numbers["baseline_labelled"] == base.feedback_total > 40
    # The other way round: the numbers name each variant's own count, not the smaller one.
    swapped = next(g for g in analyse(ALL_GATES, cand, base).gates if g.gate == "feedback")
    assert swapped.numbers == {"baseline_labelled": 40, "candidate_labelled": base.feedback_total}


def test_shadow_gate_is_skipped_without_a_shadow() -> None:
    rng = np.random.default_rng(9)
    verdict = analyse(ALL_GATES, draw(rng, 1000, Behaviour()), draw(rng, 1000, Behaviour()))
    assert verdict.numbers["shadow_agreement"]["outcome"] == "skipped"


def test_a_shadow_with_few_comparisons_is_inconclusive() -> None:
    rng = np.random.default_rng(10)
    base, cand = draw(rng, 1000, Behaviour()), draw(rng, 1000, Behaviour())
    shadow = VariantWindow(requests=50, shadow_total=50, shadow_agree=50)
    verdict = analyse(ALL_GATES, base, cand, shadow=shadow)
    assert verdict.outcome is Outcome.INCONCLUSIVE
    assert "shadow_agreement: too few samples (shadow 50; 200 needed" in verdict.reason


def test_only_configured_gates_are_judged() -> None:
    policy = parse_policy({"min_requests": 20, "gates": {"latency": None}})
    rng = np.random.default_rng(11)
    verdict = analyse(policy, draw(rng, 500, Behaviour()), draw(rng, 500, Behaviour(median_s=1)))
    assert set(verdict.numbers) == {"error_rate", "requests"}
    assert verdict.outcome is Outcome.PASS


def test_numbers_are_strict_json_even_with_empty_latency() -> None:
    base = VariantWindow(requests=300, errors=3)
    base.latency[5] = 300
    cand = VariantWindow(requests=300, errors=0)
    cand.latency[5] = 300
    verdict = analyse(ALL_GATES, base, cand)
    text = json.dumps(verdict.numbers, allow_nan=False)  # PostgreSQL JSONB refuses NaN/inf
    assert json.loads(text)["requests"] == {"baseline": 300, "candidate": 300}
    no_latency = VariantWindow(requests=300)
    verdict = analyse(ALL_GATES, base, no_latency)
    assert verdict.numbers["latency"]["outcome"] == "inconclusive"
    json.dumps(verdict.numbers, allow_nan=False)


def test_zero_errors_on_both_sides_do_not_break_the_error_test() -> None:
    result = excess(0, 500, 0, 500, 0.01)
    assert result["test"] == "agresti-caffo z" and result["p_value"] > 0.5


def test_no_margin_uses_fishers_exact_test() -> None:
    assert excess(10, 200, 0, 200, 0.0)["p_value"] < 0.01
    result = excess(2, 200, 2, 200, 0.0)
    assert result["test"] == "fisher exact" and result["p_value"] > 0.5


def test_distribution_test_on_one_value_and_on_scores() -> None:
    assert distribution_test([1.0] * 50, [1.0] * 60)["p_value"] == 1.0
    rng = np.random.default_rng(12)
    same = distribution_test(list(rng.normal(0, 1, 400)), list(rng.normal(0, 1, 400)))
    assert same["test"] == "kolmogorov-smirnov" and same["p_value"] > 0.001
    moved = distribution_test(list(rng.normal(0, 1, 400)), list(rng.normal(1, 1, 400)))
    assert moved["p_value"] < 1e-6


def test_without_traffic_gates_a_short_window_is_still_inconclusive() -> None:
    policy = parse_policy({"min_requests": 200, "gates": {"error_rate": None, "latency": None}})
    verdict = analyse(policy, VariantWindow(requests=1000), VariantWindow(requests=20))
    assert verdict.outcome is Outcome.INCONCLUSIVE
    assert verdict.reason == (
        "requests: too few samples (baseline 1000, candidate 20; 200 needed from each)"
    )
    assert analyse(policy, VariantWindow(requests=200), VariantWindow(requests=200)).reason == (
        "all gates passed"
    )


def test_rows_of_the_legacy_latency_scheme_are_read_into_the_finer_one() -> None:
    legacy_edges = [50e-6 * (60.0 / 50e-6) ** (i / 39) for i in range(40)]
    stored = [0] * LEGACY_BUCKETS
    stored[10], stored[39], stored[40] = 5, 2, 1  # ~0.6 ms, the 60 s bucket, beyond 60 s
    counts = latency_counts(stored)
    assert len(counts) == BUCKETS and sum(counts) == 8
    assert counts[40] == 5 and LATENCY_EDGES_S[40] == pytest.approx(legacy_edges[10])
    assert counts[156] == 2 and LATENCY_EDGES_S[156] == pytest.approx(60.0)
    assert counts[-1] == 1
    current = [0] * BUCKETS
    current[3] = 7
    assert latency_counts(current) == current


@pytest.mark.parametrize("sizes", [(40, 40), (200, 40), (40, 200)])
def test_a_healthy_candidate_in_short_windows_rarely_fails_on_latency(
    sizes: tuple[int, int],
) -> None:
    """A p90 estimated from 40 requests is their 4th slowest. The gate used to trust the
    baseline's own estimate: it failed 6.5 % of these healthy windows with 40 baseline and
    200 candidate requests, and about one real healthy rollout in 20-60 (the end-to-end
    20-of-20 test saw it). The two-proportion test counts that noise."""
    policy = parse_policy(
        {"min_requests": 30, "gates": {"latency": {"quantile": 0.9, "max_ratio": 1.5}}}
    )
    verdicts = simulate(Behaviour(), seed=11, policy=policy, sizes=sizes)
    assert share(verdicts, failed_on("latency")) <= 0.05
