"""ONNX fast path: parity on the sample decides whether the compiled model is kept."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_breast_cancer, make_classification, make_regression
from sklearn.ensemble import (
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
)
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from shipyard.runtimes.base import PRIMARY_OUTPUT, PROBA_OUTPUT, ModelInput, Outputs
from shipyard.runtimes.compile import Compiled, compare, compile_model
from shipyard.runtimes.flavors import flavor_for_object
from shipyard.runtimes.onnx import OnnxFlavor


class Native:
    """A native runtime built the way registration builds it: save, then load."""

    def __init__(self, model: object, tmp_path: Path) -> None:
        flavor = flavor_for_object(model)
        self.flavor_name = flavor.name
        saved = flavor.save(model, tmp_path, trust=True)
        self.runtime = flavor.load({name: tmp_path / name for name in saved.files}, saved.meta)
        self.flavor = flavor.name

    def predict(self, inputs: ModelInput) -> Outputs:
        return self.runtime.predict(inputs)


def compile_and_check(model: object, sample: ModelInput, tmp_path: Path) -> Compiled:
    native = Native(model, tmp_path)
    compiled = compile_model(model, native.flavor_name, sample, native)
    assert compiled.record["status"] == "kept", compiled.record
    assert compiled.onnx is not None
    assert compiled.record["rows"] == len(sample)
    # Served through the onnx flavor exactly as the registry will load it.
    path = tmp_path / "compiled.onnx"
    path.write_bytes(compiled.onnx)
    fast = OnnxFlavor().load({"model.onnx": path}, compiled.meta).predict(sample)
    want = native.predict(sample)
    assert set(fast) == set(want)
    assert fast[PRIMARY_OUTPUT].dtype == want[PRIMARY_OUTPUT].dtype
    if PROBA_OUTPUT in want:
        np.testing.assert_array_equal(fast[PRIMARY_OUTPUT], want[PRIMARY_OUTPUT])
        np.testing.assert_allclose(fast[PROBA_OUTPUT], want[PROBA_OUTPUT], atol=1e-5)
    else:
        np.testing.assert_allclose(fast[PRIMARY_OUTPUT], want[PRIMARY_OUTPUT], rtol=1e-5, atol=1e-5)
    return compiled


def classification() -> tuple[np.ndarray, np.ndarray]:
    x, y = make_classification(
        n_samples=200, n_features=8, n_informative=5, n_classes=3, random_state=0
    )
    return x.astype(np.float32), y


def regression() -> tuple[np.ndarray, np.ndarray]:
    x, y = make_regression(n_samples=200, n_features=6, noise=0.1, random_state=0)
    return x.astype(np.float32), y


@pytest.mark.parametrize(
    "model",
    [
        RandomForestClassifier(n_estimators=10, max_depth=6, random_state=0),
        GradientBoostingClassifier(n_estimators=10, random_state=0),
        LogisticRegression(max_iter=500),
        xgb.XGBClassifier(n_estimators=10, max_depth=3),
        lgb.LGBMClassifier(n_estimators=10, verbose=-1),
    ],
    ids=lambda model: type(model).__name__,
)
def test_classifiers_are_kept(model: Any, tmp_path: Path) -> None:
    x, y = classification()
    compiled = compile_and_check(model.fit(x, y), x, tmp_path)
    assert compiled.record["labels_equal"] is True
    assert compiled.record["max_abs_diff"] <= 1e-5
    assert compiled.meta["outputs"] == {"label": PRIMARY_OUTPUT, "probabilities": PROBA_OUTPUT}


@pytest.mark.parametrize(
    "model",
    [
        GradientBoostingRegressor(n_estimators=10, random_state=0),
        LinearRegression(),
        xgb.XGBRegressor(n_estimators=10),
        lgb.LGBMRegressor(n_estimators=10, verbose=-1),
    ],
    ids=lambda model: type(model).__name__,
)
def test_regressors_are_kept(model: Any, tmp_path: Path) -> None:
    x, y = regression()
    compiled = compile_and_check(model.fit(x, y), x, tmp_path)
    assert compiled.record["labels_equal"] is None
    assert compiled.meta["flatten"] == [PRIMARY_OUTPUT]


def test_float64_logistic_uses_double_when_needed(tmp_path: Path) -> None:
    x, y = load_breast_cancer(return_X_y=True)  # float64, features of very different scales
    model = LogisticRegression(max_iter=5000).fit(x, y)
    compiled = compile_and_check(model, x, tmp_path)
    assert compiled.record["input_element"] in ("float", "double")


def test_xgb_booster_regression_is_kept(tmp_path: Path) -> None:
    x, y = regression()
    booster = xgb.XGBRegressor(n_estimators=5).fit(x, y).get_booster()
    compile_and_check(booster, x, tmp_path)


def test_column_transformer_pipeline_with_strings(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "amount": rng.normal(100, 30, 150),
            "count": rng.integers(0, 5, 150),
            "country": rng.choice(["fr", "de", "us"], 150),
        }
    )
    labels = np.where((frame["country"] == "fr") | (frame["amount"] > 120), "fraud", "ok")
    model = make_pipeline(
        ColumnTransformer(
            [
                ("num", StandardScaler(), ["amount", "count"]),
                ("cat", OneHotEncoder(handle_unknown="ignore"), ["country"]),
            ]
        ),
        LogisticRegression(),
    ).fit(frame, labels)
    compiled = compile_and_check(model, frame, tmp_path)
    assert [pair[0] for pair in compiled.meta["columns"]] == ["amount", "count", "country"]
    assert compiled.record["labels_equal"] is True


def test_hist_gradient_boosting_is_kept(tmp_path: Path) -> None:
    # Needs protobuf < 7: protobuf 7 rejects the bool attributes skl2onnx 1.20 writes here.
    x, y = classification()
    compile_and_check(HistGradientBoostingClassifier(max_iter=10).fit(x, y), x, tmp_path)


class Majority(ClassifierMixin, BaseEstimator):  # type: ignore[misc]
    """A custom estimator no converter knows."""

    def fit(self, x: np.ndarray, y: np.ndarray) -> Majority:
        self.classes_, counts = np.unique(y, return_counts=True)
        self.label_ = self.classes_[np.argmax(counts)]
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.full(len(x), self.label_)


def test_custom_estimator_is_unsupported(tmp_path: Path) -> None:
    x, y = classification()
    model = Majority().fit(x, y)
    compiled = compile_model(model, "sklearn", x, Native(model, tmp_path))
    assert compiled.record["status"] == "unsupported"
    assert "Majority" in compiled.record["reason"]
    assert compiled.onnx is None


@pytest.mark.parametrize("flavor", ["torch", "onnx", "pyfunc"])
def test_native_only_flavors(flavor: str) -> None:
    compiled = compile_model(object(), flavor, np.zeros((1, 1)), Native.__new__(Native))
    assert compiled.record["status"] == "unsupported"
    assert compiled.record["reason"] == f"flavor {flavor} runs natively"


def test_raw_classification_booster_is_unsupported(tmp_path: Path) -> None:
    x, y = classification()
    booster = xgb.XGBClassifier(n_estimators=3).fit(x, y).get_booster()
    compiled = compile_model(booster, "xgboost", x, Native(booster, tmp_path))
    assert compiled.record["status"] == "unsupported"
    assert "sklearn wrapper" in compiled.record["reason"]


def test_mismatch_is_rejected_with_numbers() -> None:
    want = {
        PRIMARY_OUTPUT: np.array([0, 1, 1]),
        PROBA_OUTPUT: np.array([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6]]),
    }
    got = {
        PRIMARY_OUTPUT: np.array([0, 1, 0]),
        PROBA_OUTPUT: np.array([[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]]),
    }
    result = compare(want, got)
    assert result["ok"] is False
    assert result["labels_equal"] is False
    assert result["max_abs_diff"] == pytest.approx(0.1)
    assert "labels differ" in result["reason"]
    strings = compare({PRIMARY_OUTPUT: np.array(["a"])}, {PRIMARY_OUTPUT: np.array([0])})
    assert strings["ok"] is False  # same count, different dtype kind
    regression_result = compare(
        {PRIMARY_OUTPUT: np.array([100.0, 200.0])}, {PRIMARY_OUTPUT: np.array([100.0, 200.01])}
    )
    assert regression_result["ok"] is False
    assert regression_result["max_abs_diff"] == pytest.approx(0.01)


def test_native_failure_is_reported_not_raised(tmp_path: Path) -> None:
    x, y = classification()
    model = LogisticRegression().fit(x, y)
    compiled = compile_model(model, "sklearn", x[:, :3], Native(model, tmp_path))
    assert compiled.record["status"] == "failed"
    assert "native predict" in compiled.record["reason"]


@pytest.mark.parametrize(
    "model",
    [
        RandomForestClassifier(n_estimators=5, random_state=0),
        xgb.XGBClassifier(n_estimators=5),
        lgb.LGBMClassifier(n_estimators=5, verbose=-1),
    ],
    ids=lambda model: type(model).__name__,
)
def test_numeric_frame_is_fed_as_one_matrix(model: Any, tmp_path: Path) -> None:
    x, y = classification()
    frame = pd.DataFrame(x[:, :4].astype(np.float64), columns=["a", "b", "c", "d"])
    frame["d"] = (frame["d"] * 3).round().astype("int64")  # mixed dtypes, named features
    compiled = compile_and_check(model.fit(frame, y), frame, tmp_path)
    assert "columns" not in compiled.meta


def test_string_labels_keep_their_dtype(tmp_path: Path) -> None:
    x, y = classification()
    labels = np.array(["low", "mid", "high"])[y]
    for index, model in enumerate(
        [RandomForestClassifier(n_estimators=5, random_state=0), lgb.LGBMClassifier(verbose=-1)]
    ):
        folder = tmp_path / str(index)
        folder.mkdir()
        compiled = compile_and_check(model.fit(x, labels), x, folder)
        assert compiled.meta["dtypes"][PRIMARY_OUTPUT] == labels.dtype.str
