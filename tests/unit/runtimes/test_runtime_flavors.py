"""Flavor lookup by name, by object and by file."""

from __future__ import annotations

import pickle
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pytest
import skops.io as sio
import xgboost as xgb
from sklearn.datasets import make_regression
from sklearn.linear_model import LinearRegression

from shipyard.core.errors import InvalidArgument
from shipyard.runtimes.flavors import (
    flavor_for_file,
    flavor_for_object,
    flavor_names,
    get_flavor,
)


def test_names_and_lookup() -> None:
    assert flavor_names() == ["pyfunc", "xgboost", "lightgbm", "sklearn", "onnx", "torch"]
    assert get_flavor("sklearn").name == "sklearn"
    with pytest.raises(InvalidArgument, match="unknown flavor 'keras'.*sklearn"):
        get_flavor("keras")


def test_wrappers_go_to_their_own_flavor() -> None:
    assert flavor_for_object(xgb.XGBClassifier()).name == "xgboost"
    assert flavor_for_object(lgb.LGBMRegressor()).name == "lightgbm"
    assert flavor_for_object(LinearRegression()).name == "sklearn"


def test_unsupported_object() -> None:
    with pytest.raises(InvalidArgument, match=r"builtins\.dict.*supported flavors") as info:
        flavor_for_object({"a": 1})
    assert info.value.details["type"] == "builtins.dict"


def test_files_are_sniffed(tmp_path: Path) -> None:
    x, y = make_regression(n_samples=40, n_features=3, random_state=0)
    sio.dump(LinearRegression().fit(x, y), tmp_path / "a.skops")
    (tmp_path / "b.pkl").write_bytes(pickle.dumps([1]))
    xgb.XGBRegressor(n_estimators=2).fit(x, y).save_model(tmp_path / "c.json")
    xgb.XGBRegressor(n_estimators=2).fit(x, y).save_model(tmp_path / "d.ubj")
    lgb.LGBMRegressor(n_estimators=2, verbose=-1).fit(x, y).booster_.save_model(tmp_path / "e.txt")
    (tmp_path / "f.onnx").write_bytes(b"whatever")
    (tmp_path / "g.pt").write_bytes(b"whatever")
    found = {path.name: flavor_for_file(path).name for path in sorted(tmp_path.iterdir())}
    assert found == {
        "a.skops": "sklearn",
        "b.pkl": "sklearn",
        "c.json": "xgboost",
        "d.ubj": "xgboost",
        "e.txt": "lightgbm",
        "f.onnx": "onnx",
        "g.pt": "torch",
    }


def test_unknown_files(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "data.npy").write_bytes(np.zeros(3).tobytes())
    for name in ("notes.txt", "data.npy", "absent.onnx"):
        with pytest.raises(InvalidArgument, match=name):
            flavor_for_file(tmp_path / name)
