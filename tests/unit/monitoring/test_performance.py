"""Realised performance: sklearn's numbers, undefined metrics explained, bad input rejected."""

from __future__ import annotations

import math
import sys

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics

from shipyard.core.errors import FailedPrecondition, InvalidArgument
from shipyard.monitoring.performance import (
    classification_performance,
    join_feedback,
    regression_performance,
)


def test_binary_classification_matches_sklearn() -> None:
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 2, 500)
    score = np.clip(truth * 0.4 + rng.uniform(0, 0.6, 500), 0, 1)
    pred = (score >= 0.5).astype(int)
    perf = classification_performance(truth, pred, score)
    assert perf.n_rows == 500 and perf.n_dropped == 0
    assert perf.metrics["accuracy"] == pytest.approx(metrics.accuracy_score(truth, pred))
    assert perf.metrics["f1"] == pytest.approx(metrics.f1_score(truth, pred))
    assert perf.metrics["roc_auc"] == pytest.approx(metrics.roc_auc_score(truth, score))
    assert perf.metrics["log_loss"] == pytest.approx(metrics.log_loss(truth, score))
    assert perf.reasons == {}


def test_multiclass_is_macro_averaged() -> None:
    truth = ["a", "b", "c", "a", "b", "c"]
    pred = ["a", "b", "b", "a", "c", "c"]
    perf = classification_performance(truth, pred)
    assert perf.metrics["f1"] == pytest.approx(metrics.f1_score(truth, pred, average="macro"))
    assert perf.metrics["roc_auc"] is None
    assert perf.reasons["roc_auc"] == "no scores (probabilities) given"


def test_single_class_window_has_no_auc_and_says_why() -> None:
    perf = classification_performance([1, 1, 1], [1, 0, 1], [0.9, 0.2, 0.8])
    assert perf.metrics["accuracy"] == pytest.approx(2 / 3)
    assert perf.metrics["roc_auc"] is None
    assert perf.reasons["roc_auc"] == "only positive labels in this window: ROC AUC undefined"
    assert perf.metrics["log_loss"] is not None and math.isfinite(perf.metrics["log_loss"])


def test_nan_rows_are_dropped_and_counted() -> None:
    truth = pd.Series([1, 0, None, 1], dtype="Int64")
    perf = classification_performance(truth, [1, 0, 1, 0], [0.9, 0.1, 0.8, np.nan])
    assert perf.n_rows == 2 and perf.n_dropped == 2
    assert perf.metrics["accuracy"] == 1.0


def test_empty_window_gives_none_with_reason() -> None:
    for perf in (classification_performance([], []), regression_performance([], [])):
        assert perf.n_rows == 0
        assert set(perf.metrics.values()) == {None}
        assert set(perf.reasons.values()) == {"no labelled rows"}


def test_regression_matches_sklearn_and_constant_truth_has_no_r2() -> None:
    truth, pred = np.array([1.0, 2.0, 4.0, np.nan]), np.array([1.5, 2.0, 3.0, 9.0])
    perf = regression_performance(truth, pred)
    assert perf.n_dropped == 1
    assert perf.metrics["mae"] == pytest.approx(metrics.mean_absolute_error(truth[:3], pred[:3]))
    assert perf.metrics["rmse"] == pytest.approx(
        math.sqrt(metrics.mean_squared_error(truth[:3], pred[:3]))
    )
    assert perf.metrics["r2"] == pytest.approx(metrics.r2_score(truth[:3], pred[:3]))
    constant = regression_performance([2.0, 2.0], [1.0, 3.0])
    assert constant.metrics["r2"] is None
    assert constant.reasons["r2"] == "labels are constant in this window: R2 undefined"


def test_bad_input_is_rejected_with_a_message() -> None:
    with pytest.raises(InvalidArgument, match=r"differ in length: \[2, 3\]"):
        classification_performance([1, 0], [1, 0, 1])
    with pytest.raises(InvalidArgument, match=r"probabilities of the positive class"):
        classification_performance([1, 0], [1, 0], [1.5, 0.2])
    with pytest.raises(InvalidArgument, match="y_pred has 1 values that are not numbers"):
        regression_performance([1.0, 2.0], np.array([1.0, "x"], dtype=object))
    with pytest.raises(InvalidArgument, match="one-dimensional"):
        classification_performance(np.zeros((2, 2)), np.zeros((2, 2)))
    perf = classification_performance([1, 0], [1, 0])
    with pytest.raises(InvalidArgument, match="unknown metric 'mae' for classification"):
        perf.value("mae")


def test_join_feedback_latest_wins_and_unknown_ids_stay_unlabelled() -> None:
    predictions = pd.DataFrame({"request_id": ["a", "b", "c"], "output.label": [1, 0, 1]})
    feedback = pd.DataFrame({"request_id": ["a", "b", "b", "zzz"], "value": [1, 1, 0, 1]})
    joined = join_feedback(predictions, feedback)
    assert joined["label"].tolist()[:2] == [1, 0]
    assert pd.isna(joined["label"].iloc[2])
    assert len(joined) == 3  # feedback for an unknown request id adds no row
    with pytest.raises(InvalidArgument, match="feedback is missing columns: value"):
        join_feedback(predictions, feedback.drop(columns="value"))
    assert list(feedback.columns) == ["request_id", "value"]  # inputs untouched


def test_missing_sklearn_says_which_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sklearn", None)
    with pytest.raises(FailedPrecondition, match=r"pip install 'shipyard\[monitoring\]'"):
        classification_performance([1, 0], [1, 0])
