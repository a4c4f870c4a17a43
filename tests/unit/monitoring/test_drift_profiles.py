"""Profiles: serialisation, merging and size bounds."""

from __future__ import annotations

import zlib
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from shipyard.core.errors import InvalidArgument
from shipyard.monitoring import DriftDetector
from shipyard.monitoring.profiles import BINS, CategoricalProfile, NumericProfile
from shipyard.monitoring.serialization import MAGIC

MakeFrame = Callable[..., pd.DataFrame]  # the `frame` fixture (conftest.py)


def test_round_trip_gives_identical_results(frame: MakeFrame) -> None:
    det = DriftDetector.fit(frame(3000, seed=1).assign(empty=np.nan), alpha=0.01)
    again = DriftDetector.from_bytes(det.to_bytes())
    assert again.to_bytes() == det.to_bytes()
    assert again.alpha == 0.01
    for shift in ("none", "mean", "correlation"):
        window = frame(700, seed=2, shift=shift).assign(empty=np.nan)
        assert again.check(window) == det.check(window)


def test_bytes_are_versioned_and_validated(frame: MakeFrame) -> None:
    data = DriftDetector.fit(frame(500, seed=1)).to_bytes()
    assert data.startswith(MAGIC)
    with pytest.raises(InvalidArgument, match="not a shipyard drift profile"):
        DriftDetector.from_bytes(b"\x80\x04pickle")
    with pytest.raises(InvalidArgument, match="format version 9"):
        DriftDetector.from_bytes(MAGIC + b"\x09" + data[len(MAGIC) + 1 :])
    with pytest.raises(InvalidArgument, match="corrupt"):
        DriftDetector.from_bytes(data[:-40])
    body = zlib.decompress(data[len(MAGIC) + 1 :])
    with pytest.raises(InvalidArgument, match="truncated or corrupt"):
        DriftDetector.from_bytes(data[: len(MAGIC) + 1] + zlib.compress(body[:-64]))


def test_numeric_profile_is_bounded(frame: MakeFrame) -> None:
    for rows in (1_000, 100_000):
        profile = NumericProfile.fit(np.random.default_rng(rows).lognormal(size=rows))
        assert profile.cuts.size <= BINS + 2
    det = DriftDetector.fit(frame(100_000, seed=1, numeric=6, categorical=0))
    numeric_only = len(det.to_bytes())
    assert numeric_only <= 3 * 1024 * 6  # <= 3 KB per numeric feature, PCA included


def test_numeric_profile_is_exact_at_its_cut_points() -> None:
    values = np.random.default_rng(1).normal(size=10_000)
    profile = NumericProfile.fit(values)
    for cut, count in zip(profile.cuts, profile.cum, strict=True):
        assert count == np.sum(values <= cut)
    assert profile.quantile(0.5) == pytest.approx(np.median(values), abs=0.02)


def test_merged_numeric_profile_is_close_to_the_whole() -> None:
    values = np.random.default_rng(2).standard_t(3, size=20_000)
    merged = NumericProfile.fit(values[:7000]).merge(NumericProfile.fit(values[7000:]))
    assert merged.n_valid == 20_000 and merged.cuts.size <= BINS + 2
    ranks = np.searchsorted(np.sort(values), merged.cuts, side="right")
    # Rank error at every cut point is within one input cell (1/BINS of the mass).
    assert np.max(np.abs(ranks - merged.cum)) <= 20_000 / BINS


def test_merge_of_two_halves_makes_the_same_decisions_as_the_whole(frame: MakeFrame) -> None:
    ref = frame(6000, seed=1)
    whole = DriftDetector.fit(ref)
    merged = DriftDetector.fit(ref.iloc[:3000]).merge(DriftDetector.fit(ref.iloc[3000:]))
    for seed, shift in enumerate(["none", "none", "mean", "scale", "categorical", "correlation"]):
        window = frame(2000, seed=100 + seed, shift=shift)
        a, b = whole.check(window), merged.check(window)
        assert a.drift == b.drift, shift
        assert {n for n, f in a.features.items() if f.drift} == {
            n for n, f in b.features.items() if f.drift
        }
        assert a.features["x0"].p_value == pytest.approx(
            b.features["x0"].p_value, rel=0.5, abs=0.05
        )


def test_merge_requires_the_same_columns(frame: MakeFrame) -> None:
    a = DriftDetector.fit(frame(300, seed=1))
    with pytest.raises(InvalidArgument, match="different columns"):
        a.merge(DriftDetector.fit(frame(300, seed=1).drop(columns=["x0"])))
    b = DriftDetector.fit(frame(300, seed=1).assign(x0="text"))
    with pytest.raises(InvalidArgument, match="x0"):
        a.merge(b)


def test_categorical_merge_keeps_top_k_and_pools_the_rest() -> None:
    a = CategoricalProfile.fit([f"k{i}" for i in range(100)], list(range(100, 0, -1)), 3)
    b = CategoricalProfile.fit(["k0", "new"], [50, 1000], 1)
    merged = a.merge(b)
    assert merged.counts["new"] == 1000 and merged.counts["k0"] == 150
    assert merged.n_valid == a.n_valid + b.n_valid and merged.n_missing == 4
    assert len(merged.counts) == len(a.counts)


def test_the_reference_min_shown_is_the_smallest_value() -> None:
    """A column whose smallest value repeats (zeros) showed its min as -4.941e-324, the cut
    placed just below it."""
    rng = np.random.default_rng(5)
    reference = pd.DataFrame({"x": np.concatenate([np.zeros(200), rng.uniform(0.1, 1.0, 800)])})
    profile = NumericProfile.fit(reference["x"].to_numpy())
    assert profile.minimum() == 0.0 and profile.quantile(0.0) < 0.0
    window = pd.DataFrame({"x": rng.uniform(-1.0, 2.0, 500)})
    result = DriftDetector.fit(reference).check(window)
    summary = result.features["x"].summary
    assert " below the reference min 0, " in summary and "e-324" not in summary, summary
