"""sklearn flavor: skops round trips, the allowlist, joblib only with trust, bad files."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_iris, make_regression
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from shipyard.core.errors import FailedPrecondition, InvalidArgument
from shipyard.runtimes.base import PRIMARY_OUTPUT, PROBA_OUTPUT, Runtime
from shipyard.runtimes.sklearn import SklearnFlavor, allowed_type

FLAVOR = SklearnFlavor()


class Doubler:
    """Not an sklearn type: skops stores it, but the allowlist refuses it."""

    def __init__(self) -> None:
        self.factor = 2

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x)[:, 0] * self.factor


class CustomRegressor(LinearRegression):  # type: ignore[misc]
    """An sklearn subclass from outside sklearn: needs trust (joblib)."""


def roundtrip(model: object, tmp_path: Path, *, trust: bool = False) -> tuple[Runtime, Any]:
    directory = tmp_path / "saved"
    directory.mkdir()
    saved = FLAVOR.save(model, directory, trust=trust)
    runtime = FLAVOR.load({name: directory / name for name in saved.files}, saved.meta)
    return runtime, saved


def test_forest_round_trip_gives_identical_outputs(tmp_path: Path) -> None:
    x, y = load_iris(return_X_y=True)
    model = RandomForestClassifier(n_estimators=5, random_state=0).fit(x, y)
    runtime, saved = roundtrip(model, tmp_path)
    out = runtime.predict(x)
    assert saved.files == ("model.skops",)
    assert saved.meta["format"] == "skops"
    assert saved.meta["classes"] == [0, 1, 2]
    np.testing.assert_array_equal(out[PRIMARY_OUTPUT], model.predict(x))
    np.testing.assert_array_equal(out[PROBA_OUTPUT], model.predict_proba(x))


def test_pipeline_with_string_column_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=60), "c": rng.choice(["x", "y", "z"], 60)})
    labels = np.where(frame["c"] == "x", "yes", "no")
    model = make_pipeline(
        ColumnTransformer([("n", StandardScaler(), ["a"]), ("c", OneHotEncoder(), ["c"])]),
        LogisticRegression(),
    ).fit(frame, labels)
    runtime, _ = roundtrip(model, tmp_path)
    out = runtime.predict(frame)
    np.testing.assert_array_equal(out[PRIMARY_OUTPUT], model.predict(frame))
    assert out[PRIMARY_OUTPUT].dtype == model.predict(frame).dtype
    # A mapping of columns is accepted as well as a DataFrame.
    mapped = runtime.predict({"a": frame["a"].to_numpy(), "c": frame["c"].to_numpy()})
    np.testing.assert_array_equal(mapped[PRIMARY_OUTPUT], out[PRIMARY_OUTPUT])


def test_regressor_has_no_proba(tmp_path: Path) -> None:
    x, y = make_regression(n_samples=30, n_features=3, random_state=0)
    model = LinearRegression().fit(x, y)
    runtime, saved = roundtrip(model, tmp_path)
    out = runtime.predict(x)
    assert set(out) == {PRIMARY_OUTPUT}
    assert "classes" not in saved.meta
    np.testing.assert_array_equal(out[PRIMARY_OUTPUT], model.predict(x))


def test_custom_subclass_needs_trust_then_uses_joblib(tmp_path: Path) -> None:
    x, y = make_regression(n_samples=30, n_features=3, random_state=0)
    model = CustomRegressor().fit(x, y)
    with pytest.raises(FailedPrecondition, match="trust=True"):
        roundtrip(model, tmp_path)
    assert list((tmp_path / "saved").iterdir()) == []  # nothing left behind
    (tmp_path / "saved").rmdir()
    runtime, saved = roundtrip(model, tmp_path, trust=True)
    assert saved.meta["format"] == "joblib"
    assert saved.files == ("model.joblib",)
    np.testing.assert_array_equal(runtime.predict(x)[PRIMARY_OUTPUT], model.predict(x))


def test_read_skops_and_trusted_pickle(tmp_path: Path) -> None:
    x, y = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=300).fit(x, y)
    sio.dump(model, tmp_path / "m.skops")
    with (tmp_path / "m.pkl").open("wb") as handle:
        pickle.dump(model, handle)
    for name in ("m.skops", "m.pkl"):
        loaded: Any = FLAVOR.read(tmp_path / name, trust=name.endswith(".pkl"))
        np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


def test_pickle_without_trust_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "m.joblib"
    path.write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(FailedPrecondition, match="arbitrary code"):
        FLAVOR.read(path, trust=False)


def test_skops_with_disallowed_type_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "m.skops"
    sio.dump(Doubler(), path)
    with pytest.raises(FailedPrecondition, match=r"test_runtime_sklearn\.Doubler") as info:
        FLAVOR.read(path, trust=False)
    assert info.value.details["types"] == ["test_runtime_sklearn.Doubler"]


@pytest.mark.parametrize("name", ["m.skops", "m.pkl"])
@pytest.mark.parametrize("damage", ["corrupt", "truncated"])
def test_damaged_files_are_invalid_argument(tmp_path: Path, name: str, damage: str) -> None:
    x, y = load_iris(return_X_y=True)
    good = tmp_path / f"good{Path(name).suffix}"
    model = LogisticRegression(max_iter=300).fit(x, y)
    if name.endswith(".skops"):
        sio.dump(model, good)
    else:
        good.write_bytes(pickle.dumps(model))
    raw = good.read_bytes()
    bad = tmp_path / name
    bad.write_bytes(raw[: len(raw) // 2] if damage == "truncated" else b"\x00garbage" * 50)
    with pytest.raises(InvalidArgument, match="corrupt or truncated"):
        FLAVOR.read(bad, trust=True)


def test_unknown_suffix_is_invalid_argument(tmp_path: Path) -> None:
    path = tmp_path / "m.bin"
    path.write_bytes(b"x")
    with pytest.raises(InvalidArgument, match=".skops"):
        FLAVOR.read(path, trust=True)


@pytest.mark.parametrize(
    ("name", "allowed"),
    [
        ("sklearn.tree._tree.Tree", True),
        ("numpy.dtype", True),
        ("scipy.sparse._csr.csr_matrix", True),
        ("builtins.dict", True),
        ("builtins.eval", False),
        ("os.system", False),
        ("numpy.load", False),
        ("numpy.lib.npyio.load", False),
        ("scipy.io.loadmat", False),
        ("sklearnx.Evil", False),
    ],
)
def test_allowlist(name: str, allowed: bool) -> None:
    assert allowed_type(name) is allowed


def test_handles_only_sklearn_estimators() -> None:
    assert FLAVOR.handles(LinearRegression())
    assert not FLAVOR.handles(Doubler())
    assert not FLAVOR.handles(StandardScaler.__name__)
