"""The DriftDetector API and its edge cases: each one has one clear, tested behaviour."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

import shipyard.monitoring as monitoring
from shipyard.core.errors import InvalidArgument
from shipyard.monitoring import DriftDetector, DriftResult, FeatureDrift
from shipyard.monitoring.profiles import TOP_K, CategoricalProfile

MakeFrame = Callable[..., pd.DataFrame]  # the `frame` fixture (conftest.py)


def test_exports_are_pinned() -> None:
    assert monitoring.__all__ == ["DriftDetector", "DriftResult", "FeatureDrift", "Window"]


def test_check_returns_per_feature_and_multivariate_results(frame: MakeFrame) -> None:
    det = DriftDetector.fit(frame(2000, seed=1))
    result = det.check(frame(500, seed=2, shift="mean"))
    assert isinstance(result, DriftResult)
    assert list(result.features) == ["x0", "x1", "x2", "x3", "x4", "x5", "c0", "c1"]
    x0 = result.features["x0"]
    assert isinstance(x0, FeatureDrift)
    assert x0.test == "anderson-darling + range" and x0.kind == "numeric"
    assert x0.drift and x0.p_adjusted >= x0.p_value
    assert x0.summary.startswith("median ") and "→" in x0.summary
    assert result.features["c0"].test == "chi-square"
    assert result.multivariate is not None and result.multivariate.kind == "multivariate"
    assert result.drift and result.p_value == min(
        [f.p_adjusted for f in result.features.values()] + [result.multivariate.p_adjusted]
    )
    assert result.reasons()[0].startswith("feature `x0` shifted: median")


def test_window_in_chunks_equals_one_check(frame: MakeFrame) -> None:
    det = DriftDetector.fit(frame(2000, seed=1))
    window = frame(900, seed=3, shift="scale")
    acc = det.window()
    for start in range(0, 900, 250):
        acc.update(window.iloc[start : start + 250])
    assert acc.n_rows == 900
    assert acc.result() == det.check(window)


def test_missing_columns_are_named(frame: MakeFrame) -> None:
    det = DriftDetector.fit(frame(500, seed=1))
    with pytest.raises(InvalidArgument, match="missing columns: x1, c0") as info:
        det.check(frame(100, seed=2).drop(columns=["x1", "c0"]))
    assert info.value.details["missing"] == ["x1", "c0"]


def test_extra_columns_are_ignored_and_listed(frame: MakeFrame) -> None:
    det = DriftDetector.fit(frame(500, seed=1))
    window = frame(100, seed=2).assign(request_id=range(100), score=0.5)
    result = det.check(window)
    assert result.ignored_columns == ["request_id", "score"]
    assert "request_id" not in result.features


def test_empty_window_is_rejected(frame: MakeFrame) -> None:
    det = DriftDetector.fit(frame(500, seed=1))
    with pytest.raises(InvalidArgument, match="window has no rows"):
        det.check(frame(0, seed=2))
    with pytest.raises(InvalidArgument, match="window has no rows"):
        det.window().result()


def test_all_nan_and_constant_columns_are_reported_not_fatal(frame: MakeFrame) -> None:
    ref = frame(500, seed=1).assign(empty=np.nan, const=3.0)
    det = DriftDetector.fit(ref)
    quiet = det.check(frame(200, seed=2).assign(empty=np.nan, const=3.0))
    assert not quiet.features["empty"].drift and not quiet.features["const"].drift
    assert "no values in reference" in quiet.features["empty"].summary
    assert "constant in reference" in quiet.features["const"].summary
    # Leaving the constant, or a column starting to have values, is drift.
    loud = det.check(frame(200, seed=2).assign(empty=1.0, const=4.0))
    assert loud.features["const"].drift and loud.features["empty"].drift
    gone = det.check(frame(200, seed=2).assign(empty=np.nan, const=np.nan))
    assert gone.features["const"].drift
    assert "no values in window" in gone.features["const"].summary
    assert "missing 0.0% → 100.0%" in gone.features["const"].summary


def test_unsupported_reference_columns_are_skipped_and_reported(frame: MakeFrame) -> None:
    ref = frame(300, seed=1).assign(
        when=pd.date_range("2026-01-01", periods=300, freq="h"), z=np.ones(300) * 1j
    )
    det = DriftDetector.fit(ref)
    assert set(det.skipped) == {"when", "z"}
    assert "unsupported column type" in det.skipped["when"]
    result = det.check(frame(100, seed=2))  # skipped columns may be absent from the window
    assert set(result.skipped) == {"when", "z"} and "when" not in result.features


def test_unseen_categories_are_detected_and_named(frame: MakeFrame) -> None:
    det = DriftDetector.fit(frame(2000, seed=1))
    window = frame(500, seed=2)
    window.loc[:100, "c1"] = "brand-new"
    result = det.check(window)
    assert result.features["c1"].drift
    assert "unseen categories" in result.features["c1"].summary
    assert "'brand-new'" in result.features["c1"].summary


def test_huge_cardinality_is_bounded(frame: MakeFrame) -> None:
    ref = frame(20_000, seed=1).assign(user=[f"user-{i}" for i in range(20_000)])
    det = DriftDetector.fit(ref)
    profile = det.profiles["user"]
    assert isinstance(profile, CategoricalProfile)
    assert len(profile.counts) == TOP_K and profile.other == 20_000 - TOP_K
    assert profile.other_distinct == 20_000 - TOP_K
    assert len(det.to_bytes()) < 20_000  # not one entry per user
    window = frame(1000, seed=2).assign(user=[f"user-{i}" for i in range(50_000, 51_000)])
    assert not det.check(window).features["user"].drift  # new ids, same "all unique" shape


def test_bad_inputs_are_invalid_arguments(frame: MakeFrame) -> None:
    with pytest.raises(InvalidArgument, match="no rows"):
        DriftDetector.fit(frame(0, seed=1))
    with pytest.raises(InvalidArgument, match="DataFrame"):
        DriftDetector.fit([[1.0]])  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="alpha"):
        DriftDetector.fit(frame(100, seed=1), alpha=1.5)


def test_wrong_window_dtype_counts_as_missing_values(frame: MakeFrame) -> None:
    det = DriftDetector.fit(frame(1000, seed=1))
    window = frame(300, seed=2)
    window["x3"] = "oops"
    result = det.check(window)
    assert result.features["x3"].drift and "missing 0.0% → 100.0%" in result.features["x3"].summary


def test_small_reference_skips_multivariate_without_failing(frame: MakeFrame) -> None:
    det = DriftDetector.fit(frame(20, seed=1))
    result = det.check(frame(20, seed=2))
    assert result.multivariate is None and not result.drift


def test_duplicate_columns_are_rejected(frame: MakeFrame) -> None:
    ref = frame(200, seed=1)
    with pytest.raises(InvalidArgument, match="duplicate columns: x0"):
        DriftDetector.fit(pd.concat([ref, ref[["x0"]]], axis=1))
    det = DriftDetector.fit(ref)
    with pytest.raises(InvalidArgument, match="window has duplicate columns: c1"):
        det.check(pd.concat([ref, ref[["c1"]]], axis=1))


def test_category_dtype_and_bool_columns(frame: MakeFrame) -> None:
    ref = frame(1000, seed=1)
    ref["flag"] = ref["x0"] > 0
    ref["c1"] = ref["c1"].astype(pd.CategoricalDtype(["a", "b", "c", "d", "e", "f", "zz"]))
    det = DriftDetector.fit(ref)
    assert det.profiles["flag"].__class__ is CategoricalProfile
    window = frame(400, seed=2)
    window["flag"] = window["x0"] > 0
    window["c1"] = window["c1"].astype(pd.CategoricalDtype(["a", "b", "c", "d", "e", "f", "yy"]))
    result = det.check(window)
    assert not result.features["flag"].drift and not result.features["c1"].drift
    assert "unseen" not in result.features["c1"].summary  # unused categories are not "seen"
