"""Calibration (false alarms) and power of the drift tests, plus the null distributions."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from shipyard.monitoring import DriftDetector
from shipyard.monitoring.categorical import category_counts
from shipyard.monitoring.multivariate import MultivariateProfile
from shipyard.monitoring.numeric import (
    NumericWindow,
    anderson_darling,
    beyond_range_p,
    numeric_drift,
)
from shipyard.monitoring.profiles import NumericProfile
from shipyard.monitoring.pvalues import _ad_variance, anderson_darling_sf, chi2_sf, holm

MakeFrame = Callable[..., pd.DataFrame]  # the `frame` fixture (conftest.py)


@pytest.mark.parametrize("window", [100, 500, 5000])
def test_false_alarm_rate_is_at_most_alpha_at_any_window_size(
    frame: MakeFrame, window: int
) -> None:
    # A fresh reference per repetition: a 2-sample test is calibrated over both samples.
    reps = 200 if window < 5000 else 120
    alarms = 0
    for rep in range(reps):
        det = DriftDetector.fit(frame(3000, seed=10_000 + rep))
        alarms += det.check(frame(window, seed=20_000 + rep)).drift
    assert alarms / reps <= 0.07, f"{alarms}/{reps} false alarms at {window} rows"


@pytest.mark.parametrize(
    ("shift", "feature"),
    [("mean", "x0"), ("scale", "x1"), ("tail", "x2"), ("categorical", "c0")],
)
def test_marginal_shifts_are_caught_on_the_right_feature(
    frame: MakeFrame, shift: str, feature: str
) -> None:
    det = DriftDetector.fit(frame(5000, seed=1))
    result = det.check(frame(5000, seed=2, shift=shift))
    assert result.drift and result.features[feature].drift
    assert result.reasons()[0].startswith(f"feature `{feature}`")


def test_correlation_only_shift_is_caught_by_the_multivariate_test(frame: MakeFrame) -> None:
    det = DriftDetector.fit(frame(5000, seed=1))
    result = det.check(frame(5000, seed=2, shift="correlation"))
    assert result.multivariate is not None and result.multivariate.drift and result.drift
    # The marginals did not move, so no single feature may take the blame.
    assert not any(f.drift for f in result.features.values())


def test_power_is_at_least_scipy_ks_on_a_location_shift() -> None:
    # Calibrated comparison on one feature: count rejections at 5% over the same samples.
    rng = np.random.default_rng(5)
    ours = theirs = 0
    for _ in range(200):
        ref, win = rng.normal(size=2000), rng.normal(0.15, 1.0, size=300)
        window = NumericWindow(NumericProfile.fit(ref))
        window.update(win)
        a2 = anderson_darling(window.profile.cell_counts(), window.counts)
        ours += anderson_darling_sf(a2, 2000, 300) < 0.05
        theirs += stats.ks_2samp(ref, win).pvalue < 0.05
    assert ours >= theirs


def test_anderson_darling_matches_scipy_on_tied_data() -> None:
    # Discrete values: every window value is a reference cut point, so the cells lose nothing
    # and the statistic must equal scipy's midrank A2 exactly.
    rng = np.random.default_rng(3)
    ref = np.concatenate([np.arange(30.0), rng.integers(0, 30, size=400)])
    win = np.minimum(rng.integers(0, 30, size=150) + rng.integers(0, 4, size=150), 29)
    window = NumericWindow(NumericProfile.fit(ref))
    window.update(win.astype(np.float64))
    a2 = anderson_darling(window.profile.cell_counts(), window.counts)
    expected = stats.anderson_ksamp([ref, win], variant="midrank")
    t = (a2 - 1.0) / np.sqrt(_ad_variance(ref.size, win.size))
    assert t == pytest.approx(expected.statistic, rel=1e-9)
    p = anderson_darling_sf(a2, ref.size, win.size)
    assert 0.001 < p < 0.25  # inside scipy's interpolation range, so the comparison means something
    assert p == pytest.approx(expected.pvalue, rel=0.2)


def test_beyond_range_p_is_exact() -> None:
    assert beyond_range_p(1, 1, 1) == pytest.approx(1 / 2)
    assert beyond_range_p(2, 2, 2) == pytest.approx(1 / 6)  # (2 * 1) / (4 * 3)
    assert beyond_range_p(0, 10, 10) == 1.0
    # Simulated: share of draws where >= 3 of 50 window values exceed the max of 40 reference.
    rng = np.random.default_rng(4)
    draws = rng.random((20_000, 90))
    hits = np.mean((draws[:, 40:] > draws[:, :40].max(axis=1, keepdims=True)).sum(axis=1) >= 3)
    assert hits == pytest.approx(beyond_range_p(3, 50, 40), abs=0.01)


def test_a_few_values_far_outside_the_reference_range_are_caught() -> None:
    rng = np.random.default_rng(6)
    window = NumericWindow(NumericProfile.fit(rng.normal(size=5000)))
    window.update(np.concatenate([rng.normal(size=4960), rng.normal(0, 50, size=40)]))
    result = numeric_drift("amount", window.profile, window)
    assert result.p_value < 1e-4
    assert "above its max" in result.summary


def test_chi2_sf_matches_scipy() -> None:
    for df in (1, 2, 3, 7, 64):
        for x in (0.5, 3.84, 30.0, 400.0):
            assert chi2_sf(x, df) == pytest.approx(stats.chi2.sf(x, df), rel=1e-9, abs=1e-300)


def test_holm_adjusts_step_down_and_stays_monotone() -> None:
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([]) == []


def test_missing_and_infinite_joint_values_count_as_the_reference_mean() -> None:
    """The multivariate test reads a missing or infinite value as the reference mean of its
    column; a window without any is left exactly as it is."""
    rng = np.random.default_rng(3)
    reference = rng.normal(size=(400, 3))
    profile = MultivariateProfile.fit(["a", "b", "c"], reference)
    assert profile is not None
    window = rng.normal(size=(50, 3))
    holes = window.copy()
    holes[0, 0], holes[1, 1], holes[2, 2] = np.nan, np.inf, -np.inf
    filled = holes.copy()
    for row, column in ((0, 0), (1, 1), (2, 2)):
        filled[row, column] = profile.center[column]
    np.testing.assert_allclose(profile.errors(holes), profile.errors(filled))
    assert np.isfinite(profile.errors(holes)).all()
    untouched = window.copy()
    profile.errors(window)
    np.testing.assert_array_equal(window, untouched)  # the caller's matrix is not modified


@pytest.mark.parametrize(
    ("column", "expected"),
    [
        (pd.Series(["b", None, "a", "b"], dtype="string[pyarrow]"), (["b", "a"], [2, 1], 1)),
        (pd.Series([True, None, True], dtype=object), (["True"], [2], 1)),
        (pd.Series([1, 1.0, "x", float("nan")], dtype=object), (["1", "x"], [2, 1], 1)),
        # Unused categories get no key (the reference's profile would keep them as zeros).
        (pd.Series(pd.Categorical(["a", None], categories=["a", "z"])), (["a"], [1], 1)),
        (pd.Series([], dtype=object), ([], [], 0)),
    ],
)
def test_category_counts_per_dtype(
    column: pd.Series, expected: tuple[list[str], list[int], int]
) -> None:
    assert category_counts(column) == expected
