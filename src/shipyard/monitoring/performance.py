"""Realised performance of one window: predictions joined with the ground truth that came back.

    perf = classification_performance(y_true, y_pred, y_score)   # accuracy ... log_loss
    perf = regression_performance(y_true, y_pred)                # mae, rmse, r2

Pure functions over numpy/pandas; the formulas are scikit-learn's (the `monitoring` extra),
imported lazily so the rest of monitoring works without it. A metric that cannot be computed on a
window is None with the reason next to it ("one class only: ROC AUC undefined"), never a made-up
number: an alert on a None metric would be a false alarm.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from shipyard.core.errors import FailedPrecondition, InvalidArgument

CLASSIFICATION_METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss")
REGRESSION_METRICS = ("mae", "rmse", "r2")
# log loss clips probabilities so one confident miss costs ~34.5, not infinity.
PROBABILITY_EPS = 1e-15


def sklearn_metrics() -> ModuleType:
    """sklearn.metrics, or a message saying which extra to install."""
    try:
        from sklearn import metrics
    except ImportError as exc:
        raise FailedPrecondition(
            "performance metrics need scikit-learn: pip install 'shipyard[monitoring]'"
        ) from exc
    module: ModuleType = metrics
    return module


@dataclass(frozen=True)
class Performance:
    """Metrics of one window. `metrics[name]` is None when `reasons[name]` says why."""

    task: str  # "classification" | "regression"
    n_rows: int  # labelled rows used
    metrics: dict[str, float | None]
    reasons: dict[str, str] = field(default_factory=dict)
    n_dropped: int = 0  # rows without a label or prediction (NaN / missing)

    def value(self, name: str) -> float | None:
        if name not in self.metrics:
            raise InvalidArgument(
                f"unknown metric {name!r} for {self.task}; known: {', '.join(self.metrics)}"
            )
        return self.metrics[name]


def _array(values: Sequence[Any] | npt.ArrayLike | pd.Series, what: str) -> npt.NDArray[Any]:
    array = np.asarray(values)
    if array.ndim != 1:
        raise InvalidArgument(f"{what} must be one-dimensional, got shape {array.shape}")
    return array


def _missing(array: npt.NDArray[Any]) -> npt.NDArray[np.bool_]:
    return np.asarray(pd.isna(array), dtype=bool)


def _empty(task: str, names: tuple[str, ...], dropped: int, why: str) -> Performance:
    return Performance(task, 0, dict.fromkeys(names), dict.fromkeys(names, why), dropped)


def _same_length(*arrays: npt.NDArray[Any] | None) -> None:
    sizes = {a.size for a in arrays if a is not None}
    if len(sizes) > 1:
        raise InvalidArgument(f"labels and predictions differ in length: {sorted(sizes)}")


def classification_performance(
    y_true: Sequence[Any] | npt.ArrayLike | pd.Series,
    y_pred: Sequence[Any] | npt.ArrayLike | pd.Series,
    y_score: Sequence[float] | npt.ArrayLike | pd.Series | None = None,
    *,
    positive: Any = 1,
) -> Performance:
    """Accuracy, precision, recall, F1 (binary for `positive` when there are at most two
    classes, macro-averaged otherwise), and, given `y_score` = P(positive), ROC AUC and log loss."""
    truth, pred = _array(y_true, "y_true"), _array(y_pred, "y_pred")
    score = None if y_score is None else _array(y_score, "y_score").astype(np.float64)
    _same_length(truth, pred, score)
    keep = ~(_missing(truth) | _missing(pred))
    if score is not None:
        keep &= np.isfinite(score)
        if np.any((score[keep] < 0) | (score[keep] > 1)):
            raise InvalidArgument("y_score must be probabilities of the positive class in [0, 1]")
    dropped = int(truth.size - keep.sum())
    if not keep.any():
        return _empty("classification", CLASSIFICATION_METRICS, dropped, "no labelled rows")
    truth, pred = truth[keep], pred[keep]
    m = sklearn_metrics()
    classes = set(truth.tolist()) | set(pred.tolist())
    binary = len(classes) <= 2 and (positive in classes or len(classes) == 1)
    average: dict[str, Any] = (
        {"average": "binary", "pos_label": positive} if binary else {"average": "macro"}
    )
    values: dict[str, float | None] = {
        "accuracy": float(m.accuracy_score(truth, pred)),
        "precision": float(m.precision_score(truth, pred, zero_division=0, **average)),
        "recall": float(m.recall_score(truth, pred, zero_division=0, **average)),
        "f1": float(m.f1_score(truth, pred, zero_division=0, **average)),
    }
    reasons: dict[str, str] = {}
    if score is None:
        values["roc_auc"] = values["log_loss"] = None
        reasons = dict.fromkeys(("roc_auc", "log_loss"), "no scores (probabilities) given")
    else:
        _scored_metrics(m, truth == positive, score[keep], values, reasons)
    return Performance("classification", int(truth.size), values, reasons, dropped)


def _scored_metrics(
    m: ModuleType,
    is_positive: npt.NDArray[np.bool_],
    score: npt.NDArray[np.float64],
    values: dict[str, float | None],
    reasons: dict[str, str],
) -> None:
    labels = is_positive.astype(np.int64)
    clipped = np.clip(score, PROBABILITY_EPS, 1 - PROBABILITY_EPS)
    values["log_loss"] = float(m.log_loss(labels, clipped, labels=[0, 1]))
    if is_positive.all() or not is_positive.any():
        values["roc_auc"] = None
        only = "positive" if is_positive.any() else "negative"
        reasons["roc_auc"] = f"only {only} labels in this window: ROC AUC undefined"
    else:
        values["roc_auc"] = float(m.roc_auc_score(labels, score))


def regression_performance(
    y_true: Sequence[float] | npt.ArrayLike | pd.Series,
    y_pred: Sequence[float] | npt.ArrayLike | pd.Series,
) -> Performance:
    """MAE, RMSE and R2 (None for fewer than two rows or a constant truth: undefined)."""
    truth = _numeric(_array(y_true, "y_true"), "y_true")
    pred = _numeric(_array(y_pred, "y_pred"), "y_pred")
    _same_length(truth, pred)
    keep = np.isfinite(truth) & np.isfinite(pred)
    dropped = int(truth.size - keep.sum())
    if not keep.any():
        return _empty("regression", REGRESSION_METRICS, dropped, "no labelled rows")
    truth, pred = truth[keep], pred[keep]
    m = sklearn_metrics()
    values: dict[str, float | None] = {
        "mae": float(m.mean_absolute_error(truth, pred)),
        "rmse": math.sqrt(float(m.mean_squared_error(truth, pred))),
        "r2": None,
    }
    reasons: dict[str, str] = {}
    if truth.size < 2 or float(np.ptp(truth)) == 0.0:
        reasons["r2"] = "labels are constant in this window: R2 undefined"
    else:
        values["r2"] = float(m.r2_score(truth, pred))
    return Performance("regression", int(truth.size), values, reasons, dropped)


def _numeric(array: npt.NDArray[Any], what: str) -> npt.NDArray[np.float64]:
    numbers = pd.to_numeric(pd.Series(array), errors="coerce").to_numpy(dtype=np.float64)
    bad = int((~_missing(array) & np.isnan(numbers)).sum())
    if bad:
        raise InvalidArgument(f"{what} has {bad} values that are not numbers")
    return numbers


def join_feedback(
    predictions: pd.DataFrame, feedback: pd.DataFrame, *, on: str = "request_id"
) -> pd.DataFrame:
    """Predictions with a `label` column from feedback (`on`, `value`); the latest feedback per
    request wins (late corrections), and predictions with no feedback get a missing label."""
    if on not in predictions.columns:
        raise InvalidArgument(f"predictions have no {on!r} column to join feedback on")
    missing = [c for c in (on, "value") if c not in feedback.columns]
    if missing:
        raise InvalidArgument(f"feedback is missing columns: {', '.join(missing)}")
    latest = feedback.drop_duplicates(subset=on, keep="last")[[on, "value"]]
    base = predictions.drop(columns=["label"], errors="ignore")
    return base.merge(latest.rename(columns={"value": "label"}), on=on, how="left")
