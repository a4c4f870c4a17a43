"""Estimated performance of a binary classifier before its labels arrive (confidence-based).

    est = PerformanceEstimator.fit(ref_scores, ref_labels)        # reference window with labels
    est.estimate(window_scores).metrics["accuracy"]

The model's scores are calibrated on the reference (isotonic regression, scikit-learn), so a
calibrated score p_i is the chance that row i is positive. Each row then contributes its expected
share of the confusion matrix: a row predicted positive is a true positive with probability p_i and
a false positive with 1 - p_i (likewise for negatives). Expected accuracy, precision, recall and
F1 follow from the expected counts; expected ROC AUC from the expected TPR/FPR curve along the
score order. This is the idea of NannyML's CBPE; it stays right under covariate shift (P(y | x)
unchanged) and cannot see concept shift, which only realised performance shows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from shipyard.core.errors import InvalidArgument
from shipyard.monitoring.performance import Performance, sklearn_metrics

ESTIMATED_METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc")
MIN_REFERENCE_ROWS = 100  # fewer labelled rows give a calibration curve of noise


def _scores(values: Sequence[float] | npt.ArrayLike | pd.Series, what: str) -> npt.NDArray[Any]:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise InvalidArgument(f"{what} must be one-dimensional, got shape {array.shape}")
    finite = array[np.isfinite(array)]
    if np.any((finite < 0) | (finite > 1)):
        raise InvalidArgument(f"{what} must be probabilities of the positive class in [0, 1]")
    return array


def _ratio(num: float, den: float) -> float | None:
    return num / den if den > 0 else None


@dataclass(frozen=True)
class PerformanceEstimator:
    calibrator: Any  # a fitted sklearn IsotonicRegression
    threshold: float
    n_reference: int

    @classmethod
    def fit(
        cls,
        scores: Sequence[float] | npt.ArrayLike | pd.Series,
        labels: Sequence[Any] | npt.ArrayLike | pd.Series,
        *,
        positive: Any = 1,
        threshold: float = 0.5,
    ) -> PerformanceEstimator:
        """Calibrate on a labelled reference window; `threshold` is the model's decision rule."""
        if not 0.0 < threshold < 1.0:
            raise InvalidArgument(f"threshold must be in (0, 1), got {threshold}")
        score = _scores(scores, "reference scores")
        truth = np.asarray(labels)
        if truth.shape != score.shape:
            raise InvalidArgument(
                f"reference scores and labels differ in shape: {score.shape} vs {truth.shape}"
            )
        keep = np.isfinite(score) & ~np.asarray(pd.isna(truth), dtype=bool)
        score, is_positive = score[keep], (truth[keep] == positive)
        if score.size < MIN_REFERENCE_ROWS:
            raise InvalidArgument(
                f"calibration needs at least {MIN_REFERENCE_ROWS} labelled reference rows, "
                f"got {score.size}"
            )
        if is_positive.all() or not is_positive.any():
            raise InvalidArgument("calibration needs both classes in the reference labels")
        sklearn_metrics()  # the clear message when scikit-learn is missing
        from sklearn.isotonic import IsotonicRegression

        calibrator = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
        calibrator.fit(score, is_positive.astype(np.float64))
        return cls(calibrator, threshold, int(score.size))

    def calibrated(self, scores: Sequence[float] | npt.ArrayLike | pd.Series) -> npt.NDArray[Any]:
        score = _scores(scores, "scores")
        return np.asarray(self.calibrator.predict(score[np.isfinite(score)]), dtype=np.float64)

    def estimate(self, scores: Sequence[float] | npt.ArrayLike | pd.Series) -> Performance:
        """Expected metrics of the window whose (uncalibrated) scores are given."""
        score = _scores(scores, "scores")
        finite = score[np.isfinite(score)]
        dropped = int(score.size - finite.size)
        if finite.size == 0:
            why = "no scored rows"
            return Performance(
                "classification", 0, dict.fromkeys(ESTIMATED_METRICS), dict.fromkeys(ESTIMATED_METRICS, why), dropped
            )  # fmt: skip
        p = np.asarray(self.calibrator.predict(finite), dtype=np.float64)
        predicted = finite >= self.threshold
        tp = float(p[predicted].sum())
        fp = float((1 - p[predicted]).sum())
        fn = float(p[~predicted].sum())
        tn = float((1 - p[~predicted]).sum())
        values: dict[str, float | None] = {
            "accuracy": (tp + tn) / finite.size,
            "precision": _ratio(tp, tp + fp),
            "recall": _ratio(tp, tp + fn),
            "f1": _ratio(2 * tp, 2 * tp + fp + fn),
            "roc_auc": _expected_auc(finite, p),
        }
        reasons = {
            "precision": "no row predicted positive",
            "recall": "no positives expected in this window",
            "f1": "no positives expected or predicted",
            "roc_auc": "calibrated scores leave one class with no expected rows",
        }
        reasons = {k: v for k, v in reasons.items() if values[k] is None}
        return Performance("classification", int(finite.size), values, reasons, dropped)


def _expected_auc(score: npt.NDArray[Any], p: npt.NDArray[Any]) -> float | None:
    """Area under the expected ROC curve: thresholds at each distinct score, high to low."""
    positives, negatives = float(p.sum()), float((1 - p).sum())
    if positives <= 0 or negatives <= 0:
        return None
    order = np.argsort(-score, kind="stable")
    ordered_score, ordered_p = score[order], p[order]
    # Ties share one threshold: take the cumulative sums only at the last row of each score.
    last = np.r_[ordered_score[1:] != ordered_score[:-1], True]
    tpr = np.r_[0.0, np.cumsum(ordered_p)[last] / positives]
    fpr = np.r_[0.0, np.cumsum(1 - ordered_p)[last] / negatives]
    return float(np.trapezoid(tpr, fpr))
