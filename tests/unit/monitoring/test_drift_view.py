"""drift_view: logged columns matched to the reference (input., output., plain), the detector's
tests per feature, histograms of both sides on the same bins, and refusals that say why."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from shipyard.core.errors import FailedPrecondition, InvalidArgument
from shipyard.monitoring.drift_view import (
    OTHER,
    Histogram,
    drift_view,
    drift_view_of,
    live_columns,
)


def _reference(n: int = 2000) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    return pd.DataFrame(
        {"amount": rng.normal(40, 5, n), "region": rng.choice(["eu", "us", "apac"], n),
         "score": rng.uniform(size=n), "label": rng.integers(0, 2, n)}
    )  # fmt: skip


def _events(n: int, shift: float) -> pd.DataFrame:
    rng = np.random.default_rng(2)
    return pd.DataFrame(
        {"request_id": [f"r{i}" for i in range(n)], "input.amount": rng.normal(40 + shift, 5, n),
         "input.region": rng.choice(["eu", "us", "apac"], n), "output.score": rng.uniform(size=n)}
    )  # fmt: skip


def test_a_shifted_feature_drifts_and_the_others_do_not() -> None:
    view = drift_view(_reference(), _events(800, shift=8.0))
    assert (view.n_reference, view.n_live, view.not_logged) == (2000, 800, ["label"])
    tests = {f.test.name: f for f in view.features}
    assert list(tests) == ["amount", "region", "score"]  # `score` is prediction drift
    assert view.drift and tests["amount"].test.drift and tests["amount"].test.p_adjusted < 1e-6
    assert not tests["region"].test.drift and not tests["score"].test.drift
    histogram = tests["amount"].histogram
    assert len(histogram.edges) == 21 and sum(histogram.reference) == 2000
    assert sum(histogram.live) == 800
    centres = np.convolve(histogram.edges, [0.5, 0.5], "valid")
    moved = np.average(centres, weights=histogram.live) - np.average(
        centres, weights=histogram.reference
    )
    assert 6.0 < moved < 10.0


def test_no_shift_no_drift() -> None:
    view = drift_view(_reference(), _events(800, shift=0.0))
    assert not view.drift and not any(f.test.drift for f in view.features)
    assert view.multivariate is not None and view.multivariate.kind == "multivariate"


def test_columns_match_input_then_output_then_plain() -> None:
    reference = pd.DataFrame({"a": [1.0], "b": [2.0], "c": [3.0], "d": [4.0]})
    events = pd.DataFrame(columns=["input.a", "output.a", "output.b", "c", "e"])
    assert live_columns(reference, events) == {"a": "input.a", "b": "output.b", "c": "c"}


def _histogram(reference: Any, live: Any, bins: int = 10) -> Histogram:
    view = drift_view(pd.DataFrame({"x": reference}), pd.DataFrame({"input.x": live}), bins=bins)
    return view.features[0].histogram


def test_numeric_histogram_counts_tails_in_the_outer_bins() -> None:
    reference = np.r_[np.linspace(0, 10, 1000), np.nan]
    live = np.r_[np.linspace(0, 10, 100), 1e9, -1e9, np.inf]
    h = _histogram(reference, live)
    assert sum(h.reference) == 1000 and sum(h.live) == 102  # NaN and inf are in neither
    assert h.live[0] >= 1 and h.live[-1] >= 1 and h.edges[-1] < 1e9
    constant = _histogram(np.full(5, 3.0), np.full(5, 3.0), 4)
    assert constant.edges[0] == 2.5 and constant.edges[-1] == 3.5 and sum(constant.live) == 5
    # No finite value on either side: no range to draw.
    empty = drift_view(
        pd.DataFrame({"x": [np.nan] * 5, "y": np.arange(5.0)}),
        pd.DataFrame({"input.x": [np.nan] * 3, "input.y": [1.0, 2.0, 3.0]}),
    )
    assert empty.features[0].test.name == "x" and empty.features[0].histogram.edges == []


def test_categorical_histogram_shows_new_categories_and_pools_the_rest() -> None:
    reference = pd.Series([f"c{i:02d}" for i in range(20) for _ in range(20 - i)] + [None])
    live = pd.Series(["c00"] * 5 + ["new"] * 3 + ["c19"] * 2)
    h = _histogram(reference, live)
    assert h.categories[:2] == ["c00", "c01"] and "new" in h.categories
    assert h.categories[-1] == OTHER and h.edges == []
    assert sum(h.reference) == 210 and sum(h.live) == 10
    assert h.live[h.categories.index("new")] == 3 and h.live[-1] == 2  # c19 is pooled


def test_a_window_read_in_chunks_gives_the_view_of_the_whole() -> None:
    """Chunks (as iter_events pages a large window) give the same tests, counts and
    categories as one frame; only the numeric ranges come from the window's sketch."""
    reference, events = _reference(), _events(3000, shift=1.0)
    events.loc[::7, "input.region"] = "mars"  # a category the reference never had
    whole = drift_view(reference, events)
    calls = []

    def chunks() -> list[pd.DataFrame]:
        calls.append(1)
        return [events.iloc[i : i + 700] for i in range(0, len(events), 700)]

    paged = drift_view_of(reference, chunks)
    assert len(calls) == 2  # two passes over the same chunks
    assert paged.n_live == whole.n_live == 3000
    for mine, theirs in zip(paged.features, whole.features, strict=True):
        assert mine.test == theirs.test
        assert sum(mine.histogram.live) == sum(theirs.histogram.live)
        assert mine.histogram.categories == theirs.histogram.categories
        assert mine.histogram.edges == pytest.approx(theirs.histogram.edges, rel=0.05)
    region = next(f.histogram for f in paged.features if f.test.name == "region")
    assert region.live[region.categories.index("mars")] == len(events.iloc[::7])
    assert paged.multivariate == whole.multivariate


def test_a_chunk_without_a_feature_counts_it_as_missing() -> None:
    reference, events = _reference(), _events(400, shift=0.0)
    older = events.drop(columns=["input.region"])  # logged before the column existed
    view = drift_view_of(reference, lambda: [events, older])
    assert view.n_live == 800
    region = next(f for f in view.features if f.test.name == "region")
    assert sum(region.histogram.live) == 400  # the missing half is in neither histogram


def test_refusals_say_what_is_missing() -> None:
    with pytest.raises(FailedPrecondition, match="no logged rows"):
        drift_view(_reference(), _events(0, 0.0))
    with pytest.raises(FailedPrecondition, match="reference data has no rows"):
        drift_view(_reference().iloc[:0], _events(10, 0.0))
    unrelated = pd.DataFrame({"input.other": [1.0, 2.0]})
    with pytest.raises(FailedPrecondition, match="none of the reference columns.*amount"):
        drift_view(_reference(), unrelated)
    with pytest.raises(InvalidArgument, match="bins must be between 2 and 200"):
        drift_view(_reference(), _events(10, 0.0), bins=1)
