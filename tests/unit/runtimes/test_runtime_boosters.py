"""xgboost and lightgbm flavors: native formats, exact outputs, damaged files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pytest
import xgboost as xgb
from sklearn.datasets import load_iris, make_classification, make_regression

from shipyard.core.errors import InvalidArgument
from shipyard.runtimes.base import PRIMARY_OUTPUT, PROBA_OUTPUT, Flavor, Runtime
from shipyard.runtimes.lightgbm import LightGBMFlavor
from shipyard.runtimes.xgboost import XGBoostFlavor

XGB = XGBoostFlavor()
LGB = LightGBMFlavor()


def roundtrip(flavor: Flavor, model: object, tmp_path: Path) -> tuple[Runtime, Any]:
    directory = tmp_path / "saved"
    directory.mkdir(parents=True)
    saved = flavor.save(model, directory, trust=False)
    return flavor.load({name: directory / name for name in saved.files}, saved.meta), saved


def iris() -> tuple[np.ndarray, np.ndarray]:
    x, y = load_iris(return_X_y=True)
    return x.astype(np.float32), y


def test_xgb_classifier_round_trip(tmp_path: Path) -> None:
    x, y = iris()
    model = xgb.XGBClassifier(n_estimators=5, max_depth=2).fit(x, y)
    runtime, saved = roundtrip(XGB, model, tmp_path)
    out = runtime.predict(x)
    assert saved.files == ("model.ubj",)
    assert saved.meta["kind"] == "classifier"
    assert saved.meta["objective"] == "multi:softprob"
    assert saved.meta["n_classes"] == 3
    np.testing.assert_array_equal(out[PRIMARY_OUTPUT], model.predict(x))
    assert out[PRIMARY_OUTPUT].dtype == model.predict(x).dtype
    np.testing.assert_array_equal(out[PROBA_OUTPUT], model.predict_proba(x))


def test_xgb_regressor_and_booster_round_trip(tmp_path: Path) -> None:
    x, y = make_regression(n_samples=80, n_features=4, random_state=0)
    model = xgb.XGBRegressor(n_estimators=5).fit(x, y)
    runtime, saved = roundtrip(XGB, model, tmp_path)
    assert set(runtime.predict(x)) == {PRIMARY_OUTPUT}
    np.testing.assert_array_equal(runtime.predict(x)[PRIMARY_OUTPUT], model.predict(x))
    booster_runtime, booster_saved = roundtrip(XGB, model.get_booster(), tmp_path / "b")
    assert booster_saved.meta["kind"] == "booster"
    np.testing.assert_array_equal(
        booster_runtime.predict(x)[PRIMARY_OUTPUT], model.get_booster().predict(xgb.DMatrix(x))
    )


@pytest.fixture
def xgb_files(tmp_path: Path) -> tuple[Any, np.ndarray, Path]:
    x, y = iris()
    model = xgb.XGBClassifier(n_estimators=3, max_depth=2).fit(x, y)
    model.save_model(tmp_path / "m.json")
    model.save_model(tmp_path / "m.ubj")
    return model, x, tmp_path


@pytest.mark.parametrize("name", ["m.json", "m.ubj"])
def test_xgb_read_native_files(xgb_files: tuple[Any, np.ndarray, Path], name: str) -> None:
    model, x, folder = xgb_files
    assert XGB.sniff(folder / name)
    booster: Any = XGB.read(folder / name, trust=False)
    expected = model.get_booster().predict(xgb.DMatrix(x))
    np.testing.assert_array_equal(booster.predict(xgb.DMatrix(x)), expected)


@pytest.mark.parametrize("name", ["m.json", "m.ubj"])
@pytest.mark.parametrize("damage", ["corrupt", "truncated"])
def test_xgb_damaged_files(xgb_files: tuple[Any, np.ndarray, Path], name: str, damage: str) -> None:
    _, _, folder = xgb_files
    raw = (folder / name).read_bytes()
    bad = folder / f"bad{Path(name).suffix}"
    bad.write_bytes(raw[: len(raw) // 2] if damage == "truncated" else b"\x07\x00junk" * 40)
    with pytest.raises(InvalidArgument, match="bad"):
        XGB.read(bad, trust=False)


def test_xgb_json_without_learner(tmp_path: Path) -> None:
    path = tmp_path / "other.json"
    path.write_text('{"hello": 1}')
    assert not XGB.sniff(path)
    with pytest.raises(InvalidArgument, match="'learner'"):
        XGB.read(path, trust=False)


@pytest.mark.parametrize("n_classes", [2, 3])
def test_lgbm_classifier_matches_wrapper_exactly(tmp_path: Path, n_classes: int) -> None:
    x, y = make_classification(
        n_samples=150, n_features=6, n_informative=4, n_classes=n_classes, random_state=0
    )
    labels = np.array(["ant", "bee", "cat"])[y]  # string classes must survive the round trip
    model = lgb.LGBMClassifier(n_estimators=8, verbose=-1).fit(x, labels)
    runtime, saved = roundtrip(LGB, model, tmp_path)
    out = runtime.predict(x)
    assert saved.meta["kind"] == "classifier"
    assert saved.meta["objective"].startswith("binary" if n_classes == 2 else "multiclass")
    np.testing.assert_array_equal(out[PRIMARY_OUTPUT], model.predict(x))
    assert out[PRIMARY_OUTPUT].dtype == np.asarray(model.predict(x)).dtype
    np.testing.assert_array_equal(out[PROBA_OUTPUT], model.predict_proba(x))


def test_lgbm_regressor_and_booster_round_trip(tmp_path: Path) -> None:
    x, y = make_regression(n_samples=80, n_features=4, random_state=0)
    model = lgb.LGBMRegressor(n_estimators=5, verbose=-1).fit(x, y)
    runtime, _ = roundtrip(LGB, model, tmp_path)
    np.testing.assert_array_equal(runtime.predict(x)[PRIMARY_OUTPUT], model.predict(x))
    booster_runtime, saved = roundtrip(LGB, model.booster_, tmp_path / "b")
    assert saved.meta["kind"] == "booster"
    np.testing.assert_array_equal(booster_runtime.predict(x)[PRIMARY_OUTPUT], model.predict(x))


def test_lgbm_read_and_damaged_text(tmp_path: Path) -> None:
    x, y = make_regression(n_samples=60, n_features=4, random_state=0)
    model = lgb.LGBMRegressor(n_estimators=5, verbose=-1).fit(x, y)
    path = tmp_path / "m.txt"
    model.booster_.save_model(path)
    assert LGB.sniff(path)
    booster: Any = LGB.read(path, trust=False)
    np.testing.assert_array_equal(booster.predict(x), model.predict(x))
    text = path.read_text()
    truncated = tmp_path / "t.txt"
    truncated.write_text(text[: len(text) // 2])
    corrupt = tmp_path / "c.txt"
    corrupt.write_bytes(b"tree\n\xff\xfe not a model")
    for bad in (truncated, corrupt):
        with pytest.raises(InvalidArgument, match="corrupt or truncated"):
            LGB.read(bad, trust=False)


def test_handles() -> None:
    assert XGB.handles(xgb.XGBClassifier())
    assert XGB.handles(xgb.Booster())
    assert LGB.handles(lgb.LGBMRegressor())
    assert not XGB.handles(lgb.LGBMRegressor())
    assert not LGB.handles(xgb.XGBRegressor())
