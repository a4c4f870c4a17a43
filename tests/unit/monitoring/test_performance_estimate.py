"""Estimated performance (CBPE) tracks the realised value under covariate shift."""

from __future__ import annotations

import numpy as np
import pytest

from shipyard.core.errors import InvalidArgument
from shipyard.monitoring.performance import classification_performance
from shipyard.monitoring.performance_estimate import PerformanceEstimator

# Stated tolerance: |estimated - realised| <= 0.03 on windows of 5,000 rows (CBPE's own error
# on such windows is ~0.005-0.014; the margin absorbs sampling noise of the realised value).
TOLERANCE = 0.03


def _simulate(rng: np.random.Generator, n: int, shift: float) -> tuple[np.ndarray, np.ndarray]:
    """Labels from a fixed P(y | x); the model's score is over-confident (needs calibration);
    `shift` moves the inputs (covariate shift), not the relation between x and y."""
    x = rng.normal(size=(n, 2))
    x[:, 0] += shift
    logit = 1.5 * x[:, 0] - 1.0 * x[:, 1] - 0.5
    labels = (rng.uniform(size=n) < 1 / (1 + np.exp(-logit))).astype(int)
    scores = 1 / (1 + np.exp(-2.5 * logit))
    return scores, labels


def test_estimate_tracks_realised_under_covariate_shift() -> None:
    rng = np.random.default_rng(7)
    ref_scores, ref_labels = _simulate(rng, 5_000, 0.0)
    estimator = PerformanceEstimator.fit(ref_scores, ref_labels)
    realised_accuracies: list[float] = []
    for shift in (0.0, 0.75, 1.5, -1.0):
        scores, labels = _simulate(rng, 5_000, shift)
        estimated = estimator.estimate(scores)
        realised = classification_performance(labels, (scores >= 0.5).astype(int), scores)
        for name in ("accuracy", "precision", "recall", "f1", "roc_auc"):
            est, real = estimated.metrics[name], realised.metrics[name]
            assert est is not None and real is not None
            assert abs(est - real) <= TOLERANCE, (shift, name, est, real)
        realised_accuracies.append(realised.value("accuracy") or 0.0)
    # The shifts really change performance, so tracking it is not trivial.
    assert max(realised_accuracies) - min(realised_accuracies) > 0.05


def test_estimate_handles_empty_and_nan_windows() -> None:
    rng = np.random.default_rng(1)
    estimator = PerformanceEstimator.fit(*_simulate(rng, 1_000, 0.0))
    empty = estimator.estimate([])
    assert empty.n_rows == 0 and set(empty.metrics.values()) == {None}
    assert set(empty.reasons.values()) == {"no scored rows"}
    some = estimator.estimate([0.9, np.nan, 0.1])
    assert some.n_rows == 2 and some.n_dropped == 1


def test_all_predicted_negative_has_no_precision() -> None:
    rng = np.random.default_rng(2)
    estimator = PerformanceEstimator.fit(*_simulate(rng, 1_000, 0.0))
    perf = estimator.estimate([0.01, 0.02, 0.2])
    assert perf.metrics["precision"] is None
    assert perf.reasons["precision"] == "no row predicted positive"


def test_bad_reference_is_rejected() -> None:
    with pytest.raises(InvalidArgument, match="at least 100 labelled reference rows, got 3"):
        PerformanceEstimator.fit([0.1, 0.5, 0.9], [0, 1, 1])
    with pytest.raises(InvalidArgument, match="both classes"):
        PerformanceEstimator.fit(np.linspace(0, 1, 200), np.ones(200))
    with pytest.raises(InvalidArgument, match="differ in shape"):
        PerformanceEstimator.fit(np.linspace(0, 1, 200), np.ones(10))
    with pytest.raises(InvalidArgument, match=r"probabilities of the positive class in \[0, 1\]"):
        PerformanceEstimator.fit(np.linspace(0, 2, 200), np.ones(200))
    with pytest.raises(InvalidArgument, match=r"threshold must be in \(0, 1\), got 1.5"):
        PerformanceEstimator.fit(np.linspace(0, 1, 200), np.ones(200), threshold=1.5)
